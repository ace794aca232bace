from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from core.exceptions import ApplicationError
from dashboard.forms import StudyFilterForm, WorkerReviewForm
from dashboard.selectors import (
    dashboard_for,
    study_actions,
    study_build_state,
    study_list_filtered,
    study_list_rows,
)
from exports.services import export_create
from judgments.apis import stimulus_response  # the annotator API's PNG reply (no validators)
from judgments.preview import PREVIEW_MAX_TESTS, hit_preview, study_has_image
from judgments.reviews import HASH_PREFIX, study_worker_get, worker_review_set
from judgments.selectors import worker_page_number, worker_stats, worker_stats_page
from studies.lifecycle import study_close, study_pause, study_start
from studies.models import Item, Study
from studies.selectors import studies_visible_to, study_list_for
from studies.views import annotator_context
from training.selectors import model_card as model_card_of
from training.selectors import owned_model_version
from training.triggers import training_request

STUDIES_PER_PAGE = 25
STUDY_PAGE_WORKERS = 25  # the study page's Workers section; the rest on the workers page


@login_required
def study_list(request):
    form = StudyFilterForm(request.GET or None)
    status = form.cleaned_data["status"] if form.is_valid() else ""
    studies = study_list_filtered(studies=study_list_for(user=request.user), status=status)
    page = Paginator(studies, STUDIES_PER_PAGE).get_page(request.GET.get("page"))
    query = urlencode({"status": status}) if status else ""
    context = {
        "form": form,
        "status": status,
        "page": page,
        "rows": study_list_rows(studies=page),
        "query": query,
    }
    return render(request, "dashboard/index.html", context)


def _owned(request, study_id) -> Study:
    """The researcher's own study, or 404 (never 403: other researchers' ids are not confirmed)."""
    return get_object_or_404(studies_visible_to(user=request.user), pk=study_id)


PROLIFIC_QUERY = "PROLIFIC_PID={{%PROLIFIC_PID%}}&STUDY_ID={{%STUDY_ID%}}&SESSION_ID={{%SESSION_ID%}}"
MTURK_FRAME_HEIGHT = 0  # MTurk: 0 sizes the frame to the worker's browser window
MTURK_XML = (
    '<ExternalQuestion xmlns="http://mechanicalturk.amazonaws.com/AWSMechanicalTurkDataSchemas/'
    '2006-07-14/ExternalQuestion.xsd">\n'
    "  <ExternalURL>{url}</ExternalURL>\n"
    "  <FrameHeight>{height}</FrameHeight>\n"
    "</ExternalQuestion>"
)


def share_links(*, annotator_url: str, config: dict) -> dict:
    """The crowd links of a study: the anonymous URL, Prolific's with its placeholders, MTurk's
    ExternalQuestion XML; each with whether the study admits that platform (config `platforms`)."""
    platforms = config["platforms"]
    return {
        "anonymous": {"url": annotator_url, "allowed": "anonymous" in platforms},
        "prolific": {"url": f"{annotator_url}?{PROLIFIC_QUERY}", "allowed": "prolific" in platforms},
        "mturk": {
            "url": annotator_url,
            "xml": MTURK_XML.format(url=annotator_url, height=MTURK_FRAME_HEIGHT),
            "allowed": "mturk" in platforms,
        },
    }


@login_required
def study_detail(request, study_id):
    study = _owned(request, study_id)
    annotator_url = request.build_absolute_uri(f"/s/{study.pk}/")
    config = study.collection
    dashboard = dashboard_for(study=study)
    build = study_build_state(study=study, roles=dashboard["stats"]["items"])
    context = {
        "study": study,
        "config": config,
        "exports": study.exports.all()[:10],
        **dashboard,
        "annotator_url": annotator_url,
        "build": build,
        "actions": study_actions(
            study=study, n_test=build["items"][Item.Role.TEST], n_judgments=dashboard["stats"]["judgments"]
        ),
        "share": share_links(annotator_url=annotator_url, config=config),
        "secure": annotator_url.startswith("https://"),
    }
    # the Workers section: the first page; the whole table is on the workers page
    context["workers_page"] = worker_stats_page(
        study=study, page=1, per_page=STUDY_PAGE_WORKERS, tallies=dashboard["tallies"]
    )
    context["workers"] = context["workers_page"]["results"]
    context["workers_preview"] = True
    return render(request, "dashboard/study.html", context)


@login_required
@require_GET
def study_build_progress(request, study_id):
    """The build panel as a fragment, polled by htmx while stimuli are built or a zip is imported. A poll
    that finds the work ended answers HX-Refresh, so the page reloads once, showing the outcome."""
    study = _owned(request, study_id)
    build = study_build_state(study=study)
    response = render(request, "dashboard/_build.html", {"study": study, "build": build})
    if request.headers.get("HX-Request") and not build["running"]:
        response["HX-Refresh"] = "true"
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_GET
def study_import(request, study_id):
    """The zip import page: the upload goes to the API (POST /api/v1/studies/<id>/import/, its checks are the
    only ones) from frontend/static/js/upload.js; the job's progress is the build panel, polled."""
    study = _owned(request, study_id)
    build = study_build_state(study=study)
    return render(
        request,
        "dashboard/import.html",
        {
            "study": study,
            "build": build,
            "actions": study_actions(study=study, n_test=build["items"][Item.Role.TEST], n_judgments=0),
            "splits": Item.Split.choices,
            "max_upload_bytes": settings.PERCEPTLAB_MAX_UPLOAD_BYTES,
            "limits": settings.PERCEPTLAB_LIMITS,
            "parts": "ref, p0 and p1" if study.kind == Study.Kind.TWO_AFC else "p0 and p1",
        },
    )


@login_required
@require_GET
def study_try(request, study_id):
    """ "Try it as an annotator": the real annotator page (annotator/task.html, annotator.js) in preview mode.
    Its HIT comes from study_try_hit and its images from study_try_image; nothing is recorded."""
    study = _owned(request, study_id)
    if not study.items.filter(role=Item.Role.TEST).exists():
        messages.error(request, "The study has no test items yet: build or import some, then try it.")
        return redirect("dashboard-study", study_id=study.pk)
    preview = {
        "hit": reverse("study-try-hit", args=[study.pk]),
        "back": reverse("dashboard-study", args=[study.pk]),
    }
    context = {
        **annotator_context(study, params={}, preview=preview),
        "preview_tests": min(study.collection["hit_size"], PREVIEW_MAX_TESTS),
    }
    response = render(request, "annotator/task.html", context)
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_GET
def study_try_hit(request, study_id):
    """The try page's HIT (judgments.preview.hit_preview): JSON in the annotator API's shape; reads only."""
    study = _owned(request, study_id)
    if not study.items.filter(role=Item.Role.TEST).exists():
        return JsonResponse({"message": "the study has no test items yet", "extra": {}}, status=409)
    hit = hit_preview(study=study, image_url=lambda name: reverse("study-try-image", args=[study.pk, name]))
    response = JsonResponse(hit)
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_GET
def study_try_image(request, study_id, name):
    """One of the owner's own stimuli, for the try page (another study's file, or any other name: 404)."""
    study = _owned(request, study_id)
    path = study_has_image(study=study, name=name)
    if path is None:
        raise Http404("no such image in this study")
    return stimulus_response(path)


@login_required
@require_POST
def study_action(request, study_id, action):
    """start | pause | close | export | evaluate (the route's converter admits no other action)."""
    study = _owned(request, study_id)
    try:
        if action == "start":
            study_start(study=study)
        elif action == "pause":
            study_pause(study=study)
        elif action == "close":
            study_close(study=study)
            messages.info(
                request, "The study is closed: nobody new can start; started HITs may still be submitted."
            )
        elif action == "export":
            export_create(
                study=study, user=request.user, include_excluded=request.POST.get("include_excluded") == "1"
            )
            messages.info(request, "Export queued; it appears below when the worker has written it.")
        elif action == "evaluate":
            training_request(study=study, force=True)
            messages.info(request, "Retraining and evaluation queued.")
    except ApplicationError as exc:
        messages.error(request, exc.message)
    return redirect("dashboard-study", study_id=study.pk)


def _side_key(study) -> str:
    return "fraction_left" if study.kind == "2afc" else "fraction_same"


@login_required
@require_GET
def study_workers(request, study_id):
    """The workers table, 50 a page (?page=; a bad one shows the first): the fragment htmx loads, or a page
    of its own."""
    study = _owned(request, study_id)
    try:
        number = worker_page_number(value=request.GET.get("page"))
    except ApplicationError:
        number = 1  # as the study list's Paginator.get_page: a bad ?page= shows the first page
    page = worker_stats_page(study=study, page=number)
    context = {"study": study, "workers": page["results"], "workers_page": page, "side_key": _side_key(study)}
    template = "dashboard/_workers.html" if request.headers.get("HX-Request") else "dashboard/workers.html"
    return render(request, template, context)


@login_required
@require_POST
def study_worker_review(request, study_id, worker_hash):
    """Approve or reject a worker (the API's service). htmx gets the worker's row back (with the error in
    it when the decision was refused); a plain form POST goes back to the page it came from."""
    study = _owned(request, study_id)
    form = WorkerReviewForm(request.POST)
    error = ""
    try:
        # the worker first: an unknown or malformed hash is a 404 before anything is written
        worker = study_worker_get(study=study, worker_hash=worker_hash)
    except ApplicationError as exc:
        raise Http404(exc.message) from exc
    worker_hash = worker.external_hash[:HASH_PREFIX]
    if form.is_valid():
        try:
            worker_review_set(
                study=study,
                worker_hash=worker_hash,
                decision=form.cleaned_data["decision"],
                reason=form.cleaned_data["reason"],
                user=request.user,
            )
        except ApplicationError as exc:
            error = exc.message
    else:
        error = "; ".join(m for msgs in form.errors.values() for m in msgs)
    if request.headers.get("HX-Request"):
        row = worker_stats(study=study, worker_id=worker.pk)[0]
        context = {"study": study, "w": row, "side_key": _side_key(study), "error": error}
        # htmx swaps 2xx answers only: the refusal is in the row (role=alert), with a 200
        return render(request, "dashboard/_worker_row.html", context)
    if error:
        messages.error(request, f"Worker {worker_hash}: {error}")
    else:
        messages.info(request, f"Worker {worker_hash}: {form.cleaned_data['decision']}d.")
    back = reverse("study-workers", args=[study.pk]) if request.POST.get("next") == "workers" else None
    return redirect(back or reverse("dashboard-study", args=[study.pk]) + "#workers", status=302)


@login_required
@require_GET
def study_exports(request, study_id):
    """The exports section, which htmx polls every 2 s while an export is queued or running."""
    study = _owned(request, study_id)
    return render(request, "dashboard/_exports.html", {"study": study, "exports": study.exports.all()[:10]})


@login_required
@require_GET
def model_card(request, model_id):
    """A trained model's card (training.selectors.model_card) in words and tables, with its downloads."""
    try:
        version = owned_model_version(request, model_id)
    except ApplicationError as exc:
        raise Http404(exc.message) from exc
    card = model_card_of(version=version)
    return render(request, "dashboard/model_card.html", {"version": version, "card": card})
