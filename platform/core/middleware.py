"""Security headers Django does not set by itself: a Content-Security-Policy (everything from our own
origin; no CDN, no inline scripts) and a Permissions-Policy. Annotator pages may be framed by MTurk."""

import logging

from django.conf import settings

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
