from django.conf import settings
from django.http import Http404, JsonResponse
from django.views.static import serve

from core.services import system_status
from core.stimuli import STIMULUS_PATH


def livez(request):
    """Liveness of the web process alone (no database): also the load test's bare Django JSON endpoint."""
    return JsonResponse({"status": "ok"})


def healthz(request):
    return JsonResponse(system_status())


def media(request, path):
    """Stimulus PNGs are content-addressed and immutable: cache them for a year. Only names of the form
    stimuli/<sha256>.png are served, always as image/png with nosniff and a sandboxing CSP, so no file
    under MEDIA_ROOT can run as a page or script from our origin; export archives, uploads, feature caches
    and models stay private (API downloads only). In production a reverse proxy serves MEDIA_ROOT/stimuli
    unless SERVE_MEDIA is set. Local media storage only: with an object store (PERCEPTLAB_STORAGE=s3) this
    folder is empty, and annotators get every image through the per-trial API, which streams it."""
    if not settings.SERVE_MEDIA:
        raise Http404("media are served by the reverse proxy")
    if not STIMULUS_PATH.fullmatch(path):  # content-addressed stimuli; nothing else is public
        raise Http404("not a public file")
    response = serve(request, path, document_root=settings.MEDIA_ROOT)
    response["Content-Type"] = "image/png"
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Cache-Control"] = "public, max-age=31536000, immutable"
    return response
