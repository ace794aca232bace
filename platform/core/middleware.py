"""Security headers Django does not set by itself: a Content-Security-Policy (everything from our own
origin; no CDN, no inline scripts) and a Permissions-Policy. Annotator pages may be framed by MTurk."""

from django.conf import settings

BASE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self' {mturk}; frame-ancestors {frame}"
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
        response.headers.setdefault("Cross-Origin-Opener-Policy", "same-origin-allow-popups" if framed else "same-origin")
        return response
