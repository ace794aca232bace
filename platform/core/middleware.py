"""Security headers Django does not set by itself: a Content-Security-Policy (everything from our own
origin; no CDN, no inline scripts) and a Permissions-Policy. Annotator pages may be framed by MTurk.

The cookie-based middleware (sessions, CSRF, authentication, messages) comes from here as subclasses of
Django's that stand aside for the annotator's token API (TOKEN_API): those endpoints are authorised by the
assignment token in their URL, never by a cookie, and take most requests (every answer), so they neither
read a session nor attach a user. Everything else, the researcher's API and dashboard included, runs
Django's middleware unchanged, CSRF checks and all. A cookie-authenticated view on a TOKEN_API path would
find no user and refuse the request (DRF's SessionAuthentication reads the user this skips), so the skip
can never turn into a CSRF hole; tests/apps/core/test_token_api_middleware.py pins the route table to it."""

import logging
import re

from django.conf import settings
from django.contrib.auth.middleware import AuthenticationMiddleware as DjangoAuthenticationMiddleware
from django.contrib.messages.middleware import MessageMiddleware as DjangoMessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware as DjangoSessionMiddleware
from django.middleware.csrf import CsrfViewMiddleware as DjangoCsrfViewMiddleware

logger = logging.getLogger(__name__)

BASE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self' {mturk}; "
    "frame-ancestors {frame}"
)
PERMISSIONS_POLICY = "camera=(), microphone=(), geolocation=(), payment=(), usb=()"


class SecurityHeadersMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        mturk = " ".join(settings.MTURK_SUBMIT_HOSTS)
        framed = response.get("X-Perceptlab-Frame") == "mturk"
        if framed:
            del response["X-Perceptlab-Frame"]
        frame = f"'self' {mturk}" if framed else "'none'"
        response.headers.setdefault("Content-Security-Policy", BASE_POLICY.format(mturk=mturk, frame=frame))
        response.headers.setdefault("Permissions-Policy", PERMISSIONS_POLICY)
        response.headers.setdefault(
            "Cross-Origin-Opener-Policy", "same-origin-allow-popups" if framed else "same-origin"
        )
        return response


class DatabaseUnavailableMiddleware:
    """A lost or refused database connection (a restart, a failover) answers 503 with Retry-After instead of
    a 500: nothing was stored, and clients retry (the annotator page and the crowd client do, with the same
    idempotency key). Other database errors stay 500s: they are bugs."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        from django.db import InterfaceError, OperationalError, connection
        from django.http import JsonResponse

        if not isinstance(exception, (OperationalError, InterfaceError)):
            return None
        if connection.vendor == "sqlite" and "locked" not in str(exception):
            return None  # SQLite's other OperationalErrors (no such table, ...) are bugs, not outages
        logger.warning("database unavailable on %s %s: %s", request.method, request.path, exception)
        response = JsonResponse(
            {"message": "the database is unavailable; retry shortly", "extra": {"code": "db_unavailable"}},
            status=503,
        )
        response["Retry-After"] = "1"
        return response


# The annotator's token API (judgments.apis.AnnotatorApi): /api/v1/assignments/<token>/..., a study's start
# (/api/v1/studies/<id>/assignments/) and an MTurk preview's example images. Anchored at both ends where a
# researcher route shares the prefix.
TOKEN_API = re.compile(r"/api/v1/(?:assignments/|studies/[^/]+/(?:assignments/\Z|examples/\d+/[^/]+/\Z))")


def is_token_api(path: str) -> bool:
    """Whether a request path (request.path_info) is one of the annotator's token endpoints."""
    return TOKEN_API.match(path) is not None


class _SkipForTokenApi:
    """Mixin for a cookie-based middleware: on a TOKEN_API path its request and response hooks do nothing."""

    def __call__(self, request):
        if TOKEN_API.match(request.path_info):
            return self.get_response(request)
        return super().__call__(request)


class SessionMiddleware(_SkipForTokenApi, DjangoSessionMiddleware):
    pass


class CsrfViewMiddleware(_SkipForTokenApi, DjangoCsrfViewMiddleware):
    def process_view(self, request, callback, callback_args, callback_kwargs):
        if TOKEN_API.match(request.path_info):
            if _is_annotator_view(callback):
                return None  # (annotator views are csrf_exempt anyway: DRF's, with no session authentication)
            # any other view under a token path (none today; tests walk the routes) is checked as anywhere:
            # the request hook skipped above reads the cookie first
            self.process_request(request)
        return super().process_view(request, callback, callback_args, callback_kwargs)


def _is_annotator_view(callback) -> bool:
    """Whether a view is one of the annotator's token views (judgments.apis.AnnotatorApi sets TOKEN_API_VIEW;
    core does not import the apps above it)."""
    return getattr(getattr(callback, "view_class", None), "TOKEN_API_VIEW", False) is True


class AuthenticationMiddleware(_SkipForTokenApi, DjangoAuthenticationMiddleware):
    pass


class MessageMiddleware(_SkipForTokenApi, DjangoMessageMiddleware):
    pass
