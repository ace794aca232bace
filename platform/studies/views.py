from django.conf import settings
from django.shortcuts import get_object_or_404, render
from django.views.decorators.clickjacking import xframe_options_exempt

from studies.models import Study
from studies.selectors import demo_simulated_studies, study_list_public

# Crowd-platform URL parameters the annotator page understands (docs/design-notes.md, "Crowd platforms").
CROWD_PARAMS = ("PROLIFIC_PID", "STUDY_ID", "SESSION_ID", "assignmentId", "hitId", "workerId", "turkSubmitTo")
# What annotators see as the study's title: never the researcher's name for it (it may name a hypothesis, a
# screened-out batch or a paper under anonymous review; the new-study form promises it stays private).
PUBLIC_TITLES = {"2afc": "Which image is closer?", "jnd": "Same or different?"}
PATCH_DISPLAY_PX = 256  # each 64x64 patch is shown at 256x256 CSS pixels, nearest-neighbour (4x)


def home(request):
    """The public home page: the local demo studies (studies.selectors.study_list_public): the ones a person
    answers, and the simulated crowd's study (watched on the dashboard, never answered here); the CNN pool's
    progress comes from the `cnn_pool_progress` tag."""
    studies = sorted(study_list_public(), key=lambda s: s.kind != Study.Kind.TWO_AFC)  # the 2AFC demo first
    return render(
        request,
        "home.html",
        {
            "studies": [s for s in studies if not s.config.get("simulation")],
            "simulated": demo_simulated_studies(),
        },
    )


@xframe_options_exempt  # MTurk shows ExternalQuestion pages in an iframe (CSP frame-ancestors limits who)
def study_annotate(request, study_id):
    """The annotator's page: landing, consent, instructions, practice with feedback, trials, completion.
    Everything after landing runs in frontend/static/js/annotator.js against the annotator API."""
    study = get_object_or_404(Study, pk=study_id)
    params = {key: request.GET.get(key, "")[:256] for key in CROWD_PARAMS}
    response = render(request, "annotator/task.html", annotator_context(study, params=params))
    response["X-Perceptlab-Frame"] = "mturk"  # core.middleware widens frame-ancestors for this page
    # The address carries PROLIFIC_PID / workerId until annotator.js removes it: send it nowhere as a Referer
    # (the page's own script, style and API requests included). Never log this page's query string.
    response["Referrer-Policy"] = "no-referrer"
    return response


def annotator_context(study: Study, *, params: dict, preview: dict | None = None) -> dict:
    """The annotator page's template context: the study's public title (never its name), the settings the
    page reads, and the data annotator.js starts from (`page`). `preview` (the researcher's try-it page,
    dashboard.views.study_try): where its HIT comes from and where "back" goes; nothing is recorded."""
    config = study.collection
    page = {
        "study": str(study.pk),
        "kind": study.kind,
        "status": study.status,
        "timing": config["timing"],
        "patch_px": PATCH_DISPLAY_PX,
        "params": params,
        "api": "/api/v1/",
        "flush_ms": settings.PERCEPTLAB_CROWD["ANSWER_FLUSH_MS"],
    }
    if preview is not None:
        page["preview"] = preview
    return {
        "study": study,
        "config": config,
        "page": page,
        "patch_px": PATCH_DISPLAY_PX,
        "public_title": PUBLIC_TITLES[study.kind],
        "preview": preview,
    }
