from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from core.exceptions import ApplicationError
from dashboard.forms import StudyFilterForm, WorkerReviewForm
from dashboard.selectors import dashboard_for, study_list_filtered, study_list_rows
from exports.services import export_create
from judgments.reviews import worker_review_set
from judgments.selectors import worker_stats
from studies.selectors import study_list_for
from studies.services import study_pause, study_start
from training.selectors import model_card as model_card_of
from training.selectors import owned_model_version
from training.triggers import training_request

STUDIES_PER_PAGE = 25


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


@login_required
def study_detail(request, study_id):
    study = get_object_or_404(study_list_for(user=request.user), pk=study_id)
    context = {
        "study": study,
        "config": study.collection,
        "exports": study.exports.all()[:10],
        **dashboard_for(study=study),
        "annotator_url": request.build_absolute_uri(f"/s/{study.pk}/"),
    }
    return render(request, "dashboard/study.html", context)


@login_required
@require_POST
def study_action(request, study_id, action):
    study = get_object_or_404(study_list_for(user=request.user), pk=study_id)
    try:
        if action == "start":
            study_start(study=study)
        elif action == "pause":
            study_pause(study=study)
        elif action == "export":
            export_create(
                study=study, user=request.user, include_excluded=request.POST.get("include_excluded") == "1"
            )
            messages.info(request, "Export queued; it appears below when the worker has written it.")
        elif action == "evaluate":
            training_request(study=study, force=True)
            messages.info(request, "Retraining and evaluation queued.")
        else:
            messages.error(request, f"unknown action {action}")
    except ApplicationError as exc:
        messages.error(request, exc.message)
    return redirect("dashboard-study", study_id=study.pk)


def _owned(request, study_id):
    return get_object_or_404(study_list_for(user=request.user), pk=study_id)


def _side_key(study) -> str:
    return "fraction_left" if study.kind == "2afc" else "fraction_same"


@login_required
@require_GET
def study_workers(request, study_id):
    """The workers table: the fragment htmx loads, or a page of its own."""
    study = _owned(request, study_id)
    context = {"study": study, "workers": worker_stats(study=study), "side_key": _side_key(study)}
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
            if exc.status_code == 404:
                raise Http404(exc.message) from exc
            error = exc.message
    else:
        error = "; ".join(m for msgs in form.errors.values() for m in msgs)
    if request.headers.get("HX-Request"):
        rows = [w for w in worker_stats(study=study) if w["worker"] == worker_hash]
        if not rows:
            raise Http404("no such worker")
        context = {"study": study, "w": rows[0], "side_key": _side_key(study), "error": error}
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
