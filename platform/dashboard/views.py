from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from core.exceptions import ApplicationError
from dashboard.selectors import dashboard_for, study_progress
from exports.services import export_create
from studies.selectors import study_list_for
from studies.services import study_pause, study_start
from training.triggers import training_request


@login_required
def study_list(request):
    studies = list(study_list_for(user=request.user))
    progress = study_progress(studies=studies)
    rows = [(s, progress[s.pk]) for s in studies]
    return render(request, "dashboard/index.html", {"studies": studies, "rows": rows})


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
