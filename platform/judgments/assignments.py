"""The assignment engine: start (leases with overlap), heartbeat, return and expiry of HITs.

Assignment rule (docs/design-notes.md, "Assignment"): a test item is available to a worker when it is active
(a candidate pool's items wait inactive until released: judgments.pool), ``accepted judgments + open leases
< n_target`` (its split's count, raised by Bayesian stopping: judgments.stopping) and the worker has never
had it. An open
lease is an unanswered test trial of a started assignment; each item keeps the count in ``n_open``,
changed only under its row lock (+1 on a start, -1 when answered, returned or expired). Every start first
expires its study's assignments past their lease, so an expired lease frees its items for that start
without waiting for the periodic sweep. Candidates come breadth-first (least loaded first) from the index
on ``(study, n_judgments + n_open, index)`` over the items still below their target (item_queue_idx).

Concurrency: on Postgres the candidate rows are locked with ``SELECT ... FOR UPDATE SKIP LOCKED`` and then
re-read; since every count change needs the item's row lock, the re-read of locked rows is exact, and
concurrent assigners take disjoint items instead of waiting. An assigner that finds every free row held by
others in flight waits (briefly, holding nothing) for them to commit instead of answering "no work". On
SQLite every write transaction starts with ``BEGIN IMMEDIATE`` (config.settings), which serialises them.
"""

from __future__ import annotations

import hashlib
import logging
import random
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from core.exceptions import ApplicationError
from judgments import sql
from judgments.models import Assignment, CrowdPlatform, Trial, Worker, WorkerReview
from judgments.pool import pool_refill
from judgments.sql import TRIAL_ITEM_FIELDS
from judgments.workers import (
    MTURK_PREVIEW,
    client_hash,
    platform_info_clean,
    platform_session,
    worker_get_or_create,
)
from studies.collection import sentinels_per_hit
from studies.models import Item, Study

logger = logging.getLogger(__name__)

LOCK_WAIT_S = 5.0  # longest wait for rows other assigners hold in flight
_rng = random.SystemRandom()


def release_leases(assignment_ids) -> None:
    """Take the unanswered test trials of assignments that stop holding them (returned, expired) out of
    their items' open-lease counts. Call in the transaction that changes the assignments' status."""
    ids = list(assignment_ids)
    if not ids:
        return
    per_item: dict = {}
    for item_id in (
        Trial.objects.filter(assignment_id__in=ids, kind=Trial.Kind.TEST, answered=False)
        .order_by()
        .values_list("item_id", flat=True)
    ):
        per_item[item_id] = per_item.get(item_id, 0) + 1
    sql.items_lock(per_item)  # in id order, as every writer of several items takes them
    by_count: dict = {}
    for item_id, n in per_item.items():
        by_count.setdefault(n, []).append(item_id)
    for n, item_ids in sorted(by_count.items()):
        Item.objects.filter(pk__in=sorted(item_ids)).update(n_open=F("n_open") - n)


def _expire(*, now, study: Study | None = None, limit: int = 500) -> int:
    """Mark started assignments past their lease expired and release their items; each assignment is
    expired by exactly one caller (rows another transaction holds are skipped and left to it)."""
    if study is not None and not sql.stale_exists(study_id=study.pk, now=now):
        return 0  # every start: one index probe, no transaction, no queryset built
    stale = Assignment.objects.filter(status=Assignment.Status.STARTED, lease_expires_at__lte=now)
    if study is not None:
        stale = stale.filter(study=study)
    elif not stale.exists():
        return 0
    with transaction.atomic():
        locked = stale.order_by("pk")
        if connection.features.has_select_for_update_skip_locked:
            locked = locked.select_for_update(skip_locked=True)
        ids = list(locked.values_list("pk", flat=True)[:limit])
        Assignment.objects.filter(pk__in=ids).update(status=Assignment.Status.EXPIRED)
        release_leases(ids)
    return len(ids)


def _window(*, study: Study, worker: Worker, skip: set):
    """Available test items, least loaded first (breadth-first: accepted judgments plus open leases), as a
    queryset that follows the index on (study, n_judgments + n_open, index) over the open active items (a
    candidate pool's unreleased items wait inactive: judgments.pool). Expired leases were released just
    before (assignment_start), so the load counts live leases only."""
    return (
        Item.objects.filter(study=study, role=Item.Role.TEST, active=True)
        .alias(load=F("n_judgments") + F("n_open"))
        .filter(n_target__gt=F("n_judgments") + F("n_open"))  # as item_queue_idx's condition reads
        .exclude(pk__in=skip)
        .exclude(pk__in=Trial.objects.filter(worker=worker, kind=Trial.Kind.TEST).values("item_id"))
        .order_by("study_id", "load", "index")
    )


def _below_target(items) -> list[Item]:
    """The active items still below their target (Item.n_target), least loaded first (the queue's order)."""
    items = [item for item in items if item.active and item.n_judgments + item.n_open < item.n_target]
    return sorted(items, key=lambda item: (item.n_judgments + item.n_open, item.index))


def _still_open(item_ids) -> list[Item]:
    """The given items (whose rows this transaction holds), read afresh, still below their target."""
    return _below_target(Item.objects.filter(pk__in=list(item_ids)).only(*TRIAL_ITEM_FIELDS))


def _window_rows(*, study: Study, worker: Worker, skip: set, n: int) -> list[Item]:
    """PostgreSQL: the queue's next n free rows, locked (judgments.sql.window_sql)."""
    return sql.window_rows(study_id=study.pk, worker_id=worker.pk, skip=skip, n=n)


def _lease_items(*, study: Study, worker: Worker, n: int) -> list[Item]:
    if not connection.features.has_select_for_update_skip_locked:
        # SQLite: the IMMEDIATE transaction already holds the database write lock; count exactly
        ids = list(_window(study=study, worker=worker, skip=set()).values_list("pk", flat=True)[: 4 * n + 8])
        return _still_open(ids)[:n]
    taken: list[Item] = []
    rejected: set = set()
    delay, deadline = 0.005, time.monotonic() + LOCK_WAIT_S
    while True:
        held = {item.pk for item in taken} | rejected
        # SKIP LOCKED inside the ordered LIMIT: concurrent assigners each get the next rows nobody holds.
        locked = _window_rows(study=study, worker=worker, skip=held, n=n - len(taken))
        if locked:
            # Locked rows come back as their latest versions and cannot change under us: this check is exact
            # (and, as the query re-checks its WHERE clause on them, a guard rather than a filter).
            ok = _below_target(locked)
            taken += ok
            rejected |= {item.pk for item in locked} - {item.pk for item in ok}
            if len(taken) < n:
                continue  # rows others hold were skipped, or some were full: look further down the queue
        # A partial batch is served at once (small HITs near the end of a study). With nothing yet, items
        # that other transactions hold for a few milliseconds are waited for rather than reported as "no
        # work"; a transaction holding no rows blocks nobody, so this cannot livelock.
        if (
            taken
            or time.monotonic() > deadline
            or not _window(study=study, worker=worker, skip=held).exists()
        ):
            return taken[:n]
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def _first_lease_s(config: dict) -> float:
    return min(config["lease_ttl_s"], settings.PERCEPTLAB_CROWD["FIRST_LEASE_S"])


def _lease_bound(assignment: Assignment, config: dict):
    """The latest a lease may run without a new answer: lease_ttl_s after the last answer, or the short
    first lease after the start while there is none. Heartbeats and resumes extend a lease up to here
    only; answers move it (the answer path). So an assignment nobody answers is released within minutes
    however often its page (or a script) sends heartbeats."""
    if assignment.last_answer_at is None:
        return assignment.created_at + timedelta(seconds=_first_lease_s(config))
    return assignment.last_answer_at + timedelta(seconds=config["lease_ttl_s"])


def _extend_lease(assignment: Assignment, config: dict, now) -> None:
    """Heartbeat or resume: the lease moves to now + lease_ttl_s, but never past _lease_bound and never
    back."""
    lease = max(
        assignment.lease_expires_at,
        min(now + timedelta(seconds=config["lease_ttl_s"]), _lease_bound(assignment, config)),
    )
    if lease != assignment.lease_expires_at:
        assignment.lease_expires_at = lease
        Assignment.objects.filter(pk=assignment.pk).update(lease_expires_at=lease)


def _check_open_per_client(*, study: Study, client: str, now) -> None:
    cap = settings.PERCEPTLAB_CROWD["OPEN_PER_CLIENT"]
    if not cap:
        return
    if connection.vendor == "postgresql":
        # Concurrent starts from one client in one study take turns (until this transaction ends), so that
        # they cannot all count the same open assignments; other clients and studies never wait. (SQLite's
        # IMMEDIATE transactions are serialised already.)
        key = int.from_bytes(hashlib.sha256(f"{study.pk}:{client}".encode()).digest()[:8], "big", signed=True)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])
    open_ = Assignment.objects.filter(
        study=study, status=Assignment.Status.STARTED, client_hash=client, lease_expires_at__gt=now
    )
    if open_.count() >= cap:
        raise ApplicationError(
            f"this network already holds {cap} unfinished assignments in this study; finish or "
            f"return one first",
            {"code": "too_many_open", "limit": cap},
            status_code=409,
        )


@dataclass
class StartResult:
    assignment: Assignment
    created: bool
    trials: list[Trial] | None = None  # a new assignment's trials, their items loaded (for the response body)


@dataclass
class Preview:
    """An MTurk preview (no assignmentId yet): the study's first practice items as examples, nothing
    created."""

    n_examples: int


N_EXAMPLES = 2  # practice items an MTurk preview shows


def assignment_request(
    *,
    study: Study,
    platform: str,
    worker_id: str,
    consent: bool,
    platform_info: dict,
    client_ip: str | None = None,
) -> tuple[StartResult | Preview, str | None]:
    """A start request from the annotator's page: an MTurk preview, or (with consent) a started or resumed
    assignment. An anonymous link without a worker id gets a fresh one from the server; it comes back as
    the second value (None otherwise) for the page to send next time."""
    if platform == CrowdPlatform.MTURK and platform_info.get("assignment_id") in (None, "", MTURK_PREVIEW):
        return assignment_preview(study=study), None
    if not consent:
        raise ApplicationError("consent is required to take part", {"field": "consent"})
    worker_id = (worker_id or "").strip()
    issued = None
    if not worker_id:
        if platform != CrowdPlatform.ANONYMOUS:
            raise ApplicationError(f"{platform} links carry the worker id", {"field": "worker_id"})
        worker_id = issued = secrets.token_urlsafe(16)
    result = assignment_start(
        study=study, platform=platform, worker_id=worker_id, platform_info=platform_info, client_ip=client_ip
    )
    return result, issued


def assignment_preview(*, study: Study) -> Preview:
    """MTurk shows a HIT before it is accepted: the practice examples only."""
    if CrowdPlatform.MTURK not in study.collection["platforms"]:
        raise ApplicationError("this study admits no MTurk workers", {"code": "platform"}, status_code=403)
    return Preview(study.items.filter(role=Item.Role.PRACTICE).order_by("index")[:N_EXAMPLES].count())


def hit_compose(
    *,
    tests: list,
    sentinel_pool: list,
    practice: list,
    n_sentinels: int,
    balance_sides: bool,
    rng: random.Random,
) -> list[tuple[object, str, bool]]:
    """A HIT's trial sequence as (item, kind, swap): practice first, then the test items with `n_sentinels`
    sentinels drawn from the pool mixed in at random positions. `balance_sides` (2AFC): p0 goes left or
    right, half the trials each way in random order; otherwise (JND) the reference is always shown first,
    as in the paper. Pure: the items are given, the randomness comes from `rng`."""
    sentinels = rng.sample(sentinel_pool, n_sentinels)
    counted = [(item, Trial.Kind.TEST) for item in tests] + [
        (item, Trial.Kind.SENTINEL) for item in sentinels
    ]
    rng.shuffle(counted)
    sequence = [(item, Trial.Kind.PRACTICE) for item in practice] + counted
    if balance_sides:
        swaps = [i % 2 == 1 for i in range(len(sequence))]
        rng.shuffle(swaps)
    else:
        swaps = [False] * len(sequence)
    return [(item, kind, swap) for (item, kind), swap in zip(sequence, swaps, strict=True)]


def _n_sentinels(config: dict, *, n_tests: int, pool: int) -> int:
    """Sentinels for a HIT of n_tests test items: the study's share, scaled down for a partial HIT."""
    if not pool or config["sentinel_rate"] <= 0:
        return 0
    return min(pool, max(1, round(sentinels_per_hit(config) * n_tests / config["hit_size"])))


def _check_admission(*, config: dict, platform: str) -> None:
    """The study takes work from this platform."""
    if (platform == CrowdPlatform.SIMULATED) != config["simulation"]:
        message = (
            "this study takes only simulated workers"
            if config["simulation"]
            else "simulated workers are only admitted to simulation studies (config simulation=true)"
        )
        raise ApplicationError(message, {"code": "simulation"}, status_code=403)
    allowed = config["platforms"]
    if platform != CrowdPlatform.SIMULATED and platform not in allowed:
        raise ApplicationError(
            f"this study admits only {', '.join(allowed)} participants",
            {"code": "platform", "valid": allowed},
            status_code=403,
        )


def _check_not_rejected(*, study: Study, worker: Worker) -> None:
    """A worker the researcher rejected in this study (judgments.reviews) takes no more HITs there."""
    if sql.execute(
        f"SELECT 1 FROM {WorkerReview._meta.db_table} WHERE study_id = %s AND worker_id = %s "
        f"AND decision = %s",
        [
            sql.prep(WorkerReview, "study_id", study.pk),
            sql.prep(WorkerReview, "worker_id", worker.pk),
            WorkerReview.Decision.REJECTED.value,
        ],
    ):
        raise ApplicationError(
            "the researcher of this study rejected your work here, so you cannot take more of its tasks",
            {"code": "worker_rejected"},
            status_code=403,
        )


def _resume(
    *, study: Study, config: dict, worker: Worker, platform: str, session_key: str | None, now
) -> StartResult | None:
    """The worker's live HIT in this session (its lease extended), or the outcome of this platform session's
    submitted or rejected HIT; None when a new HIT is due. Call inside the start's transaction."""
    active = sql.model_rows(  # at most one (assignment_one_active_per_worker)
        Assignment,
        "study_id = %s AND worker_id = %s AND status = %s",
        [sql.prep(Assignment, "study_id", study.pk), sql.prep(Assignment, "worker_id", worker.pk), "started"],
        tail="FOR UPDATE" if connection.features.has_select_for_update else "",
    )
    active = active[0] if active else None
    if active is not None:
        superseded = (
            session_key is not None and platform_session(platform, active.platform_info) != session_key
        )
        if active.lease_expires_at > now and not superseded:
            _extend_lease(active, config, now)
            return StartResult(active, False)
        # Past its lease, or another platform session of this worker id: the old HIT ends here and its items
        # go back to the queue (its answers stay). A worker id is semi-public, so a stranger's session must
        # neither see the live HIT (its token) nor lock the real participant out of the study; the newest
        # session wins, and a participant whose HIT a stranger ended just starts again.
        status = (
            Assignment.Status.RETURNED
            if superseded and active.lease_expires_at > now
            else Assignment.Status.EXPIRED
        )
        Assignment.objects.filter(pk=active.pk).update(status=status)
        release_leases([active.pk])
        if superseded:
            logger.warning(
                "assignment %s ended: its worker started again in another %s session", active.pk, platform
            )
    if session_key:  # the same Prolific session / MTurk assignment: show its outcome again
        earlier = Assignment.objects.filter(
            study=study, worker=worker, status__in=(Assignment.Status.SUBMITTED, Assignment.Status.REJECTED)
        )
        for candidate in earlier:
            if session_key in (
                candidate.platform_info.get("session_id"),
                candidate.platform_info.get("assignment_id"),
            ):
                return StartResult(candidate, False)
    return None


def hit_pools(*, study: Study) -> tuple[list[Item], list[Item]]:
    """The study's sentinel pool and practice items, in index order: what every HIT draws from."""
    extra = sql.model_rows(
        Item,
        "study_id = %s AND role IN (%s, %s)",
        [sql.prep(Item, "study_id", study.pk), Item.Role.SENTINEL.value, Item.Role.PRACTICE.value],
        fields=sql.window_fields(),
        tail=f"ORDER BY {connection.ops.quote_name('index')}",
    )
    sentinels = [item for item in extra if item.role == Item.Role.SENTINEL]
    return sentinels, [item for item in extra if item.role == Item.Role.PRACTICE]


def hit_sequence(*, study: Study, config: dict, tests: list[Item], rng, pools=None) -> list:
    """A HIT's trial sequence for these test items (hit_compose): the study's practice items when it uses
    practice, then the tests with the sentinels a HIT of that many tests gets, sides balanced in 2AFC. Used
    by a real start, by the researcher's try-it preview (judgments.preview), which stores nothing, and by
    the scale study's bulk writer (crowdsim.scale), which passes `pools` (hit_pools, read once)."""
    sentinel_pool, practice = pools if pools is not None else hit_pools(study=study)
    practice = practice if config["practice"] else []
    return hit_compose(
        tests=tests,
        sentinel_pool=sentinel_pool,
        practice=practice,
        n_sentinels=_n_sentinels(config, n_tests=len(tests), pool=len(sentinel_pool)),
        balance_sides=study.kind == "2afc",
        rng=rng,
    )


def _hit_create(
    *, study: Study, config: dict, worker: Worker, platform: str, info: dict, client: str, now
) -> StartResult:
    """Lease test items and store a new HIT with its trials (a candidate pool first releases more items
    when this worker's free window runs low: judgments.pool). Call inside the start's transaction."""
    if study.train_budget is not None:
        pool_refill(study=study, config=config, free=_window(study=study, worker=worker, skip=set()))
    tests = _lease_items(study=study, worker=worker, n=config["hit_size"])
    if not tests:
        raise ApplicationError(
            "no work is available in this study right now", {"code": "no_work"}, status_code=409
        )
    sql.items_open_add(item_ids=[item.pk for item in tests], n=1)
    sequence = hit_sequence(study=study, config=config, tests=tests, rng=_rng)
    created = timezone.now()  # as Assignment.objects.create stamps it
    assignment = Assignment(
        created_at=created,
        updated_at=created,
        study=study,
        worker=worker,
        platform=platform,
        platform_info=info,
        n_trials=len(sequence),
        lease_expires_at=now + timedelta(seconds=_first_lease_s(config)),
        client_hash=client,
    )
    sql.insert_rows([assignment])  # what Assignment.objects.create writes (no signal listens)
    trials = sql.trials_build(assignment=assignment, worker=worker, sequence=sequence, now=now)
    sql.insert_rows(trials)
    return StartResult(assignment, True, trials)


def assignment_start(
    *,
    study: Study,
    platform: str,
    worker_id: str,
    platform_info: dict | None = None,
    is_simulated: bool = False,
    client_ip: str | None = None,
) -> StartResult:
    """Resume the worker's active assignment in this study, or lease a new batch (hit_compose: practice
    items first, then test items with sentinels mixed in at random positions, left/right sides balanced).

    A Prolific or MTurk worker resumes only in the same platform session (SESSION_ID, assignmentId): a
    worker id alone is semi-public, so a start in another session ends the live HIT (returned, its items
    released) and starts afresh, never handing out the old token. A session whose HIT was submitted or
    rejected sees that outcome again instead of a new HIT. `client_ip` (the API's core.net.client_ip): at
    most OPEN_PER_CLIENT open assignments per client and study (simulated workers, run by the researcher,
    are not capped)."""
    if study.status != Study.Status.ACTIVE:
        raise ApplicationError(
            f"this study is {study.get_status_display().lower()} and takes no work now",
            {"code": "study_inactive"},
            status_code=409,
        )
    config = study.collection
    _check_admission(config=config, platform=platform)
    info = platform_info_clean(platform=platform, info=platform_info or {})
    client = client_hash(client_ip) if client_ip and platform != CrowdPlatform.SIMULATED else ""
    worker = worker_get_or_create(
        platform=platform,
        external_id=worker_id,
        is_simulated=is_simulated or platform == CrowdPlatform.SIMULATED,
    )
    _check_not_rejected(study=study, worker=worker)
    now = timezone.now()
    _expire(now=now, study=study)  # expired leases free their items now, not at the next sweep
    with transaction.atomic():
        resumed = _resume(
            study=study,
            config=config,
            worker=worker,
            platform=platform,
            session_key=platform_session(platform, info),
            now=now,
        )
        if resumed is not None:
            return resumed
        if client:
            _check_open_per_client(study=study, client=client, now=now)
        result = _hit_create(
            study=study, config=config, worker=worker, platform=platform, info=info, client=client, now=now
        )
    n = {kind: sum(1 for trial in result.trials if trial.kind == kind) for kind in Trial.Kind.values}
    logger.info(
        "assignment %s: %d test, %d sentinel, %d practice trials for worker %s",
        result.assignment.pk,
        n[Trial.Kind.TEST],
        n[Trial.Kind.SENTINEL],
        n[Trial.Kind.PRACTICE],
        worker.pk,
    )
    return result


def locked_assignment(token: str) -> Assignment:
    """The assignment with this token, its row locked (only that row: locking the study's too would
    serialise every answer in a study and deadlock against starts' foreign-key checks), its study
    attached. Two short reads without the query compiler (judgments.sql.model_rows): every completion,
    heartbeat and return comes here."""
    found = sql.model_rows(
        Assignment,
        "token = %s",
        [token],
        tail="FOR UPDATE" if connection.features.has_select_for_update else "",
    )
    if not found:
        raise ApplicationError("assignment not found", status_code=404)
    assignment = found[0]
    assignment._state.fields_cache["study"] = sql.model_get(Study, assignment.study_id)
    return assignment


def require_live(assignment: Assignment, now) -> None:
    # An assignment past its lease is refused here; its status (and its items' open leases) change in
    # _expire, run by the next start in the study and by the periodic sweep.
    if assignment.status == Assignment.Status.EXPIRED or (
        assignment.status == Assignment.Status.STARTED and assignment.lease_expires_at <= now
    ):
        raise ApplicationError(
            "this assignment expired; start a new one", {"code": "expired"}, status_code=410
        )
    if assignment.status != Assignment.Status.STARTED:
        if (
            assignment.status == Assignment.Status.RETURNED
        ):  # given back, or ended by a newer session of the worker
            raise ApplicationError(
                "this assignment was given back or continued in another session; reload the page to "
                "go on with a new one",
                {"code": assignment.status},
                status_code=409,
            )
        raise ApplicationError(
            f"this assignment is {assignment.status}", {"code": assignment.status}, status_code=409
        )


def assignment_heartbeat(*, token: str) -> Assignment:
    """Extend the lease of a live assignment by the study's TTL, but no further than lease_ttl_s after its
    last answer (the short first lease before any): heartbeats bridge a pause, they do not hold items."""
    now = timezone.now()
    with transaction.atomic():
        assignment = locked_assignment(token)
        require_live(assignment, now)
        _extend_lease(assignment, assignment.study.collection, now)
    return assignment


def assignment_return(*, token: str) -> Assignment:
    """The worker gives the assignment back: its unanswered items are free at once."""
    with transaction.atomic():
        assignment = locked_assignment(token)
        if assignment.status == Assignment.Status.RETURNED:
            return assignment
        require_live(assignment, timezone.now())
        assignment.status = Assignment.Status.RETURNED
        Assignment.objects.filter(pk=assignment.pk).update(status=assignment.status)
        release_leases([assignment.pk])
    return assignment


def assignments_expire_stale(*, now=None) -> int:
    """Mark started assignments past their lease as expired. Housekeeping only: expired leases already
    stop counting the moment they pass."""
    now = now or timezone.now()
    total = 0
    while n := _expire(now=now):
        total += n
    return total
