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
import time
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
    return _check(study_id)[0] == "queued now"


def _check(study_id) -> tuple[str, float]:
    """judgments_added's decision and what it knows: ("off", 0) for no study or one that does not train,
    ("queued", 0) when a retrain is queued already, ("wait", seconds) inside the retrain interval,
    ("short", judgments still needed), or ("queued now", 0) when this call queued one."""
    study = Study.objects.filter(pk=study_id).only("kind", "config").first()
    if study is None:
        return "off", 0
    every = study.collection["training"]["every"]
    if every is None:
        return "off", 0
    state = _state(study_id)
    if state.queued and not _queue_lost(state):
        return "queued", 0
    wait = retry_after_s(state)
    if wait:
        return "wait", wait  # too soon: the periodic check comes back to it
    short = every - (accepted_judgments(study_id=study_id) - state.last_judgments)
    if short > 0:
        return "short", short
    return ("queued now" if _mark_queued(study_id) else "queued"), 0


# The answer path runs the trigger after every committed test judgment of a study that trains, and almost
# always nothing is due: a retrain is queued or was just made, or fewer than `every` judgments arrived. Its
# check reads the study, its training state and, past those, the sum of its items' counts: 0.8 ms of web CPU
# and up to three queries per answer, which made the answer path 50 % dearer at BAPPS scale (benchmarks.md,
# "Load test: an existing large study next to a fresh one"). So each process remembers what its last check
# found: for HOLD_S (or the interval's seconds left, at most HOLD_MAX_S) it checks again only once it has
# itself announced as many judgments as were still needed. In one process the N-th judgment still queues
# the retrain exactly; judgments counted by other processes are seen within HOLD_S, and the periodic
# retrain_due check stays the backstop. Two threads that both check are harmless: _mark_queued's
# conditional UPDATE queues once.
HOLD_S = 2.0
HOLD_MAX_S = 30.0
_holds: dict = {}  # study id -> (monotonic time the hold ends, judgments this process announces before it)


def judgment_announced(*, study_id, n: int = 1) -> bool:
    """The answer path's trigger (training.apps: after each committed transaction that stored test judgments,
    `n` of them: a batch of answers announces once): judgments_added, unless this process's hold says nothing
    can be due yet. Returns whether it queued a retrain."""
    now = time.monotonic()
    hold = _holds.get(study_id)
    if hold is not None and now < hold[0] and hold[1] > n:
        _holds[study_id] = (hold[0], hold[1] - n)
        return False
    outcome, value = _check(study_id)
    if outcome == "short":
        _holds[study_id] = (now + HOLD_S, int(value))
    elif outcome == "wait":
        _holds[study_id] = (now + min(value, HOLD_MAX_S), math.inf)
    else:  # queued (by this call or before it), or the study does not train
        _holds[study_id] = (now + HOLD_S, math.inf)
    return outcome == "queued now"


def holds_clear() -> None:
    """Forget every hold (tests; a process that changed a study's training state itself)."""
    _holds.clear()


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
