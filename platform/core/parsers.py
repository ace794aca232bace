"""The JSON every API accepts: what Python's json module accepts, less what the database or the rest of the
code cannot hold. A body nested deeper than MAX_DEPTH, or holding a string with a NUL character (PostgreSQL
refuses it in text and jsonb) or a lone UTF-16 surrogate (not encodable as UTF-8), is a 400 naming the
problem; before, each of these was a 500 somewhere downstream (a DataError, a UnicodeEncodeError, or a
RecursionError inside the parser itself)."""

from __future__ import annotations

import io

from django.core.exceptions import RequestDataTooBig
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

MAX_DEPTH = 32  # the deepest real body (a study config) is 4 levels


def check_json(value, depth: int = 0) -> None:
    """Raise ParseError when `value` (parsed JSON) is too deep or holds a string the database cannot store."""
    if depth > MAX_DEPTH:
        raise ParseError(f"JSON nested more than {MAX_DEPTH} levels deep")
    if isinstance(value, str):
        if "\x00" in value:
            raise ParseError("strings may not contain NUL characters (\\u0000)")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ParseError("strings may not contain lone UTF-16 surrogates") from exc
    elif isinstance(value, dict):
        for key, item in value.items():
            check_json(key, depth + 1)
            check_json(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            check_json(item, depth + 1)


class StrictJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError as exc:  # json.loads on thousands of nested brackets
            raise ParseError(f"JSON nested more than {MAX_DEPTH} levels deep") from exc
        check_json(data)
        return data


MAX_BODY_BYTES = 64 * 1024  # json_body's cap: an answer is under 5 kB (durations and display are capped)


def json_body(request, max_bytes: int = MAX_BODY_BYTES):
    """What request.data gives a JSON-only endpoint (one whose negotiation picks StrictJSONParser whatever
    the Content-Type), parsed straight from the body: on the answer path DRF's request.data machinery
    (stream wrapping, parser selection, form and file handling) cost as much as the parse itself. An empty
    body is {}, as there. A body over `max_bytes` is a 413 and a Content-Length that is not a number a 400,
    each with a message, before the body is read (Django's own limit answered an HTML page and logged a
    traceback for each)."""
    from core.exceptions import ApplicationError  # (core.exceptions imports DRF, whose settings import us)

    length = request.META.get("CONTENT_LENGTH") or "0"
    if not (length.isascii() and length.isdigit()):
        raise ApplicationError("Content-Length must be a whole number of bytes", {"field": "body"})
    too_big = ApplicationError(
        f"the request body may hold at most {max_bytes} bytes", {"field": "body"}, status_code=413
    )
    if int(length) > max_bytes:
        raise too_big
    try:
        body = request.body  # at most Content-Length bytes
    except RequestDataTooBig as exc:  # (Django's own limit, were max_bytes set above it)
        raise too_big from exc
    if not body:
        return {}
    return StrictJSONParser().parse(io.BytesIO(body))
