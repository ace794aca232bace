"""Request logs keep paths, never query strings or HIT tokens.

The annotator's crowd link carries PROLIFIC_PID / workerId, and raw platform ids are never stored (they are
kept as salted hashes only; docs/platform.md, "What we store about a participant"). A HIT's token is the
annotator's credential (whoever holds it may answer for them), and it is part of every annotator API path
(/api/v1/assignments/<token>/...): logs show `~` and the first 8 hex digits of its SHA-256 instead, enough to
follow one HIT's requests, and the throttle's key for that HIT starts with the same digits.

gunicorn logs with GUNICORN_ACCESS_LOG_FORMAT through GunicornLogger (docker-compose.yml, the load test):
method, path without the query (%(U)s), status, size, duration; no request line (%(r)s), query (%(q)s),
referer (%(f)s: the annotator page's own URL, query included) or user agent (%(a)s). Django's own records
(runserver's request log under `make run`, django.request's line for each 4xx and 5xx answer) pass through
RedactedRequests on their handlers (settings LOGGING)."""

from __future__ import annotations

import hashlib
import logging
import re

GUNICORN_ACCESS_LOG_FORMAT = "%(h)s %(t)s %(m)s %(U)s %(H)s %(s)s %(B)s %(M)sms"
_QUERY = re.compile(r"(/[^\s\"?]*)\?[^\s\"]*")  # a query after a path (a question in prose stays)
_TOKEN = re.compile(r"(/api/v1/assignments/)([^~/?\s\"][^/?\s\"]*)")  # a digest (~...) stays


def _token_digest(match: re.Match) -> str:
    return f"{match[1]}~{hashlib.sha256(match[2].encode()).hexdigest()[:8]}"


def redacted(text: str) -> str:
    """Query strings dropped, HIT tokens replaced by their digest: `GET /api/v1/assignments/<token>/?x=1
    HTTP/1.1` -> `GET /api/v1/assignments/~1a2b3c4d/ HTTP/1.1`. A digest already there stays."""
    if "?" in text:
        text = _QUERY.sub(r"\1", text)
    if "/assignments/" in text:
        text = _TOKEN.sub(_token_digest, text)
    return text


class RedactedRequests(logging.Filter):
    """Redact a log record's text: its message with the arguments put in (whatever their type: a request's
    repr names its path), its traceback and its stack (runserver logs the request line, django.request the
    path of every 4xx and 5xx answer, gunicorn the URI of a request it failed to handle)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # arguments that do not fit the message: logging reports it
            return True
        record.msg, record.args = redacted(message), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redacted(record.exc_text)
        if record.stack_info:
            record.stack_info = redacted(record.stack_info)
        return True
