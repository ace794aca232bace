"""Retraining triggers, kept free of torch so that web processes never import it: `judgments_added` runs
after each committed test judgment; when the study's accepted judgments have grown by `training.every`
since the last model, one conditional UPDATE marks the study queued, so the N-th judgment enqueues exactly
one `training.study_retrain` job. `retrain_due` is the periodic check; `training_request` the button."""

from __future__ import annotations

from django.db import transaction
from django.db.models import Sum

from core.tasks import enqueue_on_commit
from studies.models import Item, Study
from training.models import TrainingState


def accepted_judgments(*, study_id) -> int:
    return Item.objects.filter(study_id=study_id, role=Item.Role.TEST).aggregate(n=Sum("n_judgments"))["n"] or 0


def _state(study_id) -> TrainingState:
    state, _ = TrainingState.objects.get_or_create(study_id=study_id)
    return state


def judgments_added(*, study_id) -> bool:
    """Debounced trigger: enqueue one retrain when `every` new accepted judgments have arrived."""
    study = Study.objects.filter(pk=study_id).only("kind", "config").first()
    if study is None:
        return False
    every = study.settings["training"]["every"]
    if every is None:
        return False
    state = _state(study_id)
    if state.queued or accepted_judgments(study_id=study_id) - state.last_judgments < every:
        return False
    return _mark_queued(study_id)


def _mark_queued(study_id) -> bool:
    with transaction.atomic():
        won = TrainingState.objects.filter(study_id=study_id, queued=False).update(queued=True)
        if won:
            enqueue_on_commit("training.study_retrain", str(study_id))
    return bool(won)


VARIANTS = ("lin", "tune", "scratch")


def training_request(*, study: Study, force: bool = False, variants: list[str] | None = None) -> bool:
    """Ask for a retrain now (dashboard button, API): queued unless one is already queued. `variants`
    adds on-demand "tune" / "scratch" training (slow: the trunk trains too) to the next job."""
    from core.exceptions import ApplicationError

    state = _state(study.pk)
    extra = [v for v in (variants or []) if v != "lin"]
    if any(v not in VARIANTS for v in extra):
        raise ApplicationError(f"variants are {list(VARIANTS)}", {"field": "variants"})
    if extra:
        with transaction.atomic():
            state = TrainingState.objects.select_for_update().get(pk=state.pk)
            state.pending_variants = sorted(set(state.pending_variants) | set(extra))
            state.save(update_fields=["pending_variants"])
        force = True
    if force:
        return _mark_queued(study.pk)
    return judgments_added(study_id=study.pk)


def retrain_due() -> int:
    """The periodic check: queue every active study whose judgments grew past its `every` threshold."""
    n = 0
    for study_id in Study.objects.filter(status=Study.Status.ACTIVE).values_list("pk", flat=True):
        n += judgments_added(study_id=study_id)
    return n


