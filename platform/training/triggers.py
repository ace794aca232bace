"""Retraining triggers, kept free of torch so that web processes never import it: `judgments_added` runs
after each committed test judgment; when the study's accepted judgments have grown by `training.every`
since the last model, one conditional UPDATE marks the study queued, so the N-th judgment enqueues exactly
one `training.study_retrain` job. `retrain_due` is the periodic check; `training_request` the button.

Retrains are spaced by settings.PERCEPTLAB_MIN_RETRAIN_INTERVAL_S (from the last one queued or finished):
an automatic trigger inside the interval is deferred (the periodic check queues it later); a forced
request inside it is refused with a 429 naming the seconds left (the API sends them as Retry-After).
A `queued` flag whose job never came (a lost message) stops blocking after `queue_lost()`."""

from __future__ import annotations

import math
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q, Sum
from django.utils import timezone

from core.exceptions import ApplicationError
from core.tasks import enqueue_on_commit
from studies.models import Item, Study
from training.models import TrainingState


def accepted_judgments(*, study_id) -> int:
    return (
        Item.objects.filter(study_id=study_id, role=Item.Role.TEST).aggregate(n=Sum("n_judgments"))["n"] or 0
    )


def _state(study_id) -> TrainingState:
    state, _ = TrainingState.objects.get_or_create(study_id=study_id)
    return state


def judgments_added(*, study_id) -> bool:
    """Debounced trigger: enqueue one retrain when `every` new accepted judgments have arrived."""
    study = Study.objects.filter(pk=study_id).only("kind", "config").first()
    if study is None:
        return False
    every = study.collection["training"]["every"]
    if every is None:
        return False
    state = _state(study_id)
    if (state.queued and not _queue_lost(state)) or retry_after_s(state):
        return False  # queued already, or too soon: the periodic check comes back to it
    if accepted_judgments(study_id=study_id) - state.last_judgments < every:
        return False
    return _mark_queued(study_id)


def queue_lost() -> timedelta:
    """How long a `queued` flag may stand without its job claiming the study before it counts as lost (a
    waiting job refreshes it on every retry): an hour, or twice the claim's stale timeout if longer."""
    return timedelta(seconds=max(3600.0, 2 * settings.PERCEPTLAB_TRAINING_STALE_S))


def _queue_lost(state: TrainingState) -> bool:
    return state.queued_at is None or state.queued_at < timezone.now() - queue_lost()


def retry_after_s(state: TrainingState) -> int:
    """Seconds until the next retrain may be queued (0: now): the interval runs from the last retrain
    queued or finished, so failing jobs cannot be requested back to back either."""
    interval = settings.PERCEPTLAB_MIN_RETRAIN_INTERVAL_S
    last = max((t for t in (state.queued_at, state.last_run_at) if t is not None), default=None)
    if not interval or last is None:
        return 0
    left = interval - (timezone.now() - last).total_seconds()
    return max(0, math.ceil(left))


def _mark_queued(study_id) -> bool:
    now = timezone.now()
    with transaction.atomic():
        won = (
            TrainingState.objects.filter(study_id=study_id)
            .filter(Q(queued=False) | Q(queued_at__isnull=True) | Q(queued_at__lt=now - queue_lost()))
            .update(queued=True, queued_at=now)
        )
        if won:
            enqueue_on_commit("training.study_retrain", str(study_id))
    return bool(won)


VARIANTS = ("lin", "tune", "scratch")


def training_request(*, study: Study, force: bool = False, variants: list[str] | None = None) -> bool:
    """Ask for a retrain now (dashboard button, API): queued unless one is already queued. `variants`
    adds on-demand "tune" / "scratch" training (slow: the trunk trains too) to the next job."""
    state = _state(study.pk)
    extra = [v for v in (variants or []) if v != "lin"]
    if any(v not in VARIANTS for v in extra):
        raise ApplicationError(f"variants are {list(VARIANTS)}", {"field": "variants"})
    wait = retry_after_s(state) if (force or extra) else 0
    if wait:
        raise ApplicationError(
            f"the study was retrained or queued less than {settings.PERCEPTLAB_MIN_RETRAIN_INTERVAL_S} s "
            f"ago; ask again in {wait} s",
            {"retry_after_s": wait},
            status_code=429,
        )
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
