from django.conf import settings
from django.http import Http404, JsonResponse
from django.shortcuts import render
from django.views.static import serve

from core.services import system_status
from studies.selectors import study_list_public


def home(request):
    return render(request, "home.html", {"studies": study_list_public()})


def livez(request):
    """Liveness of the web process alone (no database): also the load test's bare Django JSON endpoint."""
    return JsonResponse({"status": "ok"})


def healthz(request):
    return JsonResponse(system_status())


PUBLIC_MEDIA = ("stimuli/",)  # export archives, feature caches and models stay private (API downloads only)


def media(request, path):
    """Stimulus PNGs are content-addressed and immutable: cache them for a year. Nothing else under
    MEDIA_ROOT is public: export archives download through the researcher API. In production a reverse
    proxy serves MEDIA_ROOT/stimuli unless SERVE_MEDIA is set."""
    if not settings.SERVE_MEDIA:
        raise Http404("media are served by the reverse proxy")
    if not path.startswith(PUBLIC_MEDIA) or ".." in path.split("/"):
        raise Http404("not a public file")
    response = serve(request, path, document_root=settings.MEDIA_ROOT)
    response["Cache-Control"] = "public, max-age=31536000, immutable"
    return response
