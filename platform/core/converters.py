"""URL converters. `handle`: an opaque server-issued handle (assignment tokens, trial ids: token_urlsafe), so
a path holding anything else (a NUL, which PostgreSQL refuses in a query; a 10 kB string) is a 404 before
any view or query runs."""

from django.urls import register_converter


class HandleConverter:
    regex = "[A-Za-z0-9_-]{1,64}"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(HandleConverter, "handle")
