"""The new-study form with its live preview, and a study's collection settings page.

Pages only: the form parses the fields into the API's `build_config` and `config`; studies.services decides
(study_create, study_update_config, as the API's POST and PATCH do) and its ApplicationError goes back onto
the field it names.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from core.exceptions import ApplicationError
from core.tasks import enqueue_on_commit
from dashboard.forms import EXCLUSION_FIELDS, JND_ONLY, CollectionForm, StudyNewForm
from studies.lifecycle import study_config_locks, study_pool_built, study_started, study_update_config
from studies.preview import PREVIEW_MAX_ITEMS, study_preview
from studies.selectors import study_list_for
from studies.services import study_create

LOCKED_FIELDS = {"timing": JND_ONLY, "exclusion": EXCLUSION_FIELDS}


@login_required
@require_http_methods(["GET", "POST"])
def study_new(request):
    if request.method == "POST":
        form = StudyNewForm(request.POST, owner=request.user)
        if form.is_valid():
            engine = form.cleaned_data["source"] == "engine"
            try:
                study = study_create(
                    name=form.cleaned_data["name"],
                    kind=form.cleaned_data["kind"],
                    build_config=form.build_config() if engine else {},
                    owner=request.user,
                    config=form.collection(form.cleaned_data["kind"]),
                )
            except ApplicationError as exc:
                form.service_error(exc)
            else:
                if study.build_config:
                    enqueue_on_commit("studies.study_build_stimuli", str(study.pk))
                    return redirect("dashboard-study", study_id=study.pk)
                return redirect("study-import", study_id=study.pk)
        status = 400
    else:
        kind = request.GET.get("kind")
        form = StudyNewForm(owner=request.user, initial={"kind": kind} if kind in ("2afc", "jnd") else {})
        status = 200
    return render(
        request,
        "dashboard/study_new.html",
        {"form": form, "jnd_only": JND_ONLY, "preview_max": PREVIEW_MAX_ITEMS},
        status=status,
    )


@login_required
@require_GET
def study_new_preview(request):
    """The preview fragment for the form's current fields (GET query); a message instead when the options
    are invalid (the same check as the study's own), never an error page."""
    form = StudyNewForm(request.GET, owner=request.user)
    context: dict = {"preview_max": PREVIEW_MAX_ITEMS}
    form.is_valid()
    if form.cleaned_data.get("source") == "zip":
        context["zip"] = True
    elif not _engine_problems(form):
        try:
            context["preview"] = study_preview(
                kind=form.kind, build_config=form.build_config(), owner=request.user
            )
            context["kind"] = form.kind
        except ApplicationError as exc:
            form.service_error(exc)
    context.setdefault("problems", _engine_problems(form))
    return render(request, "dashboard/_study_preview.html", context)


def _engine_problems(form: StudyNewForm) -> list[str]:
    """The form's errors that concern the engine's options (the preview ignores the other fields)."""
    wanted = (*form.ENGINE_FIELDS, *form.family_fields, "kind", "__all__")
    return [
        f"{form.fields[name].label if name in form.fields else 'Options'}: {' '.join(errors)}"
        for name, errors in form.errors.items()
        if name in wanted
    ]


@login_required
@require_http_methods(["GET", "POST"])
def study_settings(request, study_id):
    study = get_object_or_404(study_list_for(user=request.user), pk=study_id)
    status = 200
    if request.method == "POST":
        form = _settings_form(study, data=request.POST)
        if form.is_valid():
            config = form.collection(study.kind)
            try:
                if config:
                    study_update_config(study=study, config=config)
            except ApplicationError as exc:
                form.service_error(exc)
                status = exc.status_code
            else:
                messages.success(request, "Settings saved." if config else "Nothing changed.")
                return redirect("dashboard-study", study_id=study.pk)
        else:
            status = 400
    else:
        form = _settings_form(study)
    return render(
        request,
        "dashboard/study_settings.html",
        {"study": study, "form": form, "started": study_started(study=study), "status": status},
        status=status,
    )


def _settings_form(study, data=None) -> CollectionForm:
    form = CollectionForm(data, kind=study.kind, current=study.config)
    if study.kind != "jnd":
        for name in JND_ONLY:
            del form.fields[name]
    if study_pool_built(study=study):  # a pool is built with the stimuli (the API's PATCH refuses it too)
        form.fields["pool_factor"].disabled = True
        form.fields["pool_factor"].lock_reason = "the candidate pool was built with the stimuli"
    for key, reason in study_config_locks(study=study).items():
        for name in LOCKED_FIELDS.get(key, ()):
            if name in form.fields:
                form.fields[name].disabled = True
                form.fields[name].lock_reason = reason
    return form
