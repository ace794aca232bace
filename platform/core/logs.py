"""Request logs keep paths, never query strings: the annotator's crowd link carries PROLIFIC_PID / workerId,
and raw platform ids are never stored (they are kept as salted hashes only; docs/platform.md, "What we store
about a participant"). gunicorn logs with GUNICORN_ACCESS_LOG_FORMAT (docker-compose.yml, the load test):
method, path without the query (%(U)s), status, size, duration; no request line (%(r)s), query (%(q)s),
referer (%(f)s: the annotator page's own URL, query included) or user agent (%(a)s). Django's runserver
(`make run`) logs through `django.server`, whose handler carries NoQueryStrings (settings LOGGING)."""

from __future__ import annotations

import logging
import re

GUNICORN_ACCESS_LOG_FORMAT = "%(h)s %(t)s %(m)s %(U)s %(H)s %(s)s %(B)s %(M)sms"
_QUERY = re.compile(r"\?[^\s\"]*")


def without_query(text: str) -> str:
    """`GET /s/x/?PROLIFIC_PID=abc HTTP/1.1` -> `GET /s/x/ HTTP/1.1`."""
    return _QUERY.sub("", text)


class NoQueryStrings(logging.Filter):
    """Drop query strings from a log record's message and arguments (runserver logs the request line)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and "?" in record.msg:
            record.msg = without_query(record.msg)
        if isinstance(record.args, tuple) and any(isinstance(a, str) and "?" in a for a in record.args):
            record.args = tuple(without_query(a) if isinstance(a, str) else a for a in record.args)
        return True
