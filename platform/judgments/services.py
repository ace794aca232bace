"""Writes for the crowd: workers, the assignment engine (leases with overlap), judgment submission and QC.

Assignment rule (PLATFORM.md section 9): a test item is available to a worker when
``accepted judgments + open leases < target`` for its split and the worker has never had it. An open
lease is an unanswered test trial of a started assignment; each item keeps the count in ``n_open``,
changed only under its row lock (+1 on a start, -1 when answered, returned or expired). Every start first
expires its study's assignments past their lease, so an expired lease frees its items for that start
without waiting for the periodic sweep. Candidates come breadth-first (least loaded first) from the index
on ``(study, n_judgments + n_open, index)``.

Concurrency: on Postgres the candidate rows are locked with ``SELECT ... FOR UPDATE SKIP LOCKED`` and then
re-read; since every count change needs the item's row lock, the re-read of locked rows is exact, and
concurrent assigners take disjoint items instead of waiting. An assigner that finds every free row held by
others in flight waits (briefly, holding nothing) for them to commit instead of answering "no work". On
SQLite every write transaction starts with ``BEGIN IMMEDIATE`` (config.settings), which serialises them.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import logging
import random
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlparse

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Case, Count, F, IntegerField, Value, When
from django.utils import timezone

from core.exceptions import ApplicationError
from core.net import client_key
from judgments.models import Assignment, Judgment, Platform, Trial, Worker
from studies.collection import collection_config, completion_redirect, sentinels_per_hit
from studies.models import Item, Study

logger = logging.getLogger(__name__)

RESPONSES = {"2afc": ("left", "right"), "jnd": ("same", "different")}
MAX_RT_MS = 3600 * 1000.0
LOCK_WAIT_S = 5.0  # longest wait for rows other assigners hold in flight
_rng = random.SystemRandom()


# --- workers --------------------------------------------------------------------------------------------
def _salt() -> bytes:
    salt = settings.WORKER_ID_SALT or hashlib.sha256(b"perceptlab-worker-id:" + settings.SECRET_KEY.encode()).hexdigest()
    return salt.encode()


def worker_hash(*, platform: str, external_id: str) -> str:
    """Salted HMAC-SHA256 of a platform id; the raw id is never stored."""
    return hmac.new(_salt(), f"{platform}:{external_id}".encode(), hashlib.sha256).hexdigest()


def client_hash(ip: str) -> str:
    """Salted HMAC-SHA256 of a client address as core.net counts clients (IPv4 address, IPv6 /48 by default): what an
    assignment keeps to cap open assignments per client. The raw address is never stored."""
    return hmac.new(_salt(), f"client:{client_key(ip)}".encode(), hashlib.sha256).hexdigest()


def worker_get_or_create(*, platform: str, external_id: str, is_simulated: bool = False) -> Worker:
    if platform not in Platform.values:
        raise ApplicationError(f"unknown platform {platform!r}", {"valid": Platform.values})
    external_id = (external_id or "").strip()
    if not 1 <= len(external_id) <= 128:
        raise ApplicationError("a worker id of 1-128 characters is required", {"field": "worker_id"})
    digest = worker_hash(platform=platform, external_id=external_id)
    worker = Worker.objects.filter(platform=platform, external_hash=digest).first()
    if worker is not None:  # a returning worker: one read
        return worker
    try:
        with transaction.atomic():
            return Worker.objects.create(platform=platform, external_hash=digest, is_simulated=is_simulated)
    except IntegrityError:  # a concurrent first visit created it
        return Worker.objects.get(platform=platform, external_hash=digest)


# --- platform context -----------------------------------------------------------------------------------
MTURK_PREVIEW = "ASSIGNMENT_ID_NOT_AVAILABLE"


def platform_info_clean(*, platform: str, info: dict) -> dict:
    """Keep the platform fields we need (never the worker id itself) and check them."""
    info = info or {}
    if platform == Platform.PROLIFIC:
        keys = ("study_id", "session_id")
    elif platform == Platform.MTURK:
        keys = ("hit_id", "assignment_id", "turk_submit_to")
        submit_to = (info.get("turk_submit_to") or "").rstrip("/")
        if urlparse(submit_to)._replace(path="").geturl() not in settings.MTURK_SUBMIT_HOSTS:
            raise ApplicationError("turkSubmitTo is not an MTurk host", {"field": "turk_submit_to",
                                                                          "valid": settings.MTURK_SUBMIT_HOSTS})  # fmt: skip
        if info.get("assignment_id") in (None, "", MTURK_PREVIEW):
            raise ApplicationError("MTurk preview: accept the HIT to start", {"field": "assignment_id"})
    else:
        keys = ()
    clean = {}
    for key in keys:
        value = info.get(key)
        if value is not None:
            if not isinstance(value, str) or len(value) > 256:
                raise ApplicationError(f"{key} must be a string of at most 256 characters", {"field": key})
            clean[key] = value
    if platform == Platform.PROLIFIC and not clean.get("session_id"):
        raise ApplicationError("Prolific links carry SESSION_ID", {"field": "session_id"})
    return clean


# --- the assignment engine ------------------------------------------------------------------------------
def open_leases(*, study: Study) -> dict:
    """item id -> open leases counted from the trials (unanswered test trials of started assignments):
    what each item's n_open must equal. The engine reads n_open; this is the check."""
    return dict(
        Trial.objects.filter(assignment__study=study, assignment__status=Assignment.Status.STARTED,
                             kind=Trial.Kind.TEST, answered=False)  # fmt: skip
        .order_by()
        .values_list("item_id")
        .annotate(c=Count("pk"))
        .values_list("item_id", "c")
    )


def _release(assignment_ids) -> None:
    """Take the unanswered test trials of assignments that stop holding them (returned, expired) out of
    their items' open-lease counts. Call in the transaction that changes the assignments' status."""
    ids = list(assignment_ids)
    if not ids:
        return
    per_item: dict = {}
    for item_id in (Trial.objects.filter(assignment_id__in=ids, kind=Trial.Kind.TEST, answered=False)
                    .order_by().values_list("item_id", flat=True)):  # fmt: skip
        per_item[item_id] = per_item.get(item_id, 0) + 1
    by_count: dict = {}
    for item_id, n in per_item.items():
        by_count.setdefault(n, []).append(item_id)
    for n, item_ids in sorted(by_count.items()):
        Item.objects.filter(pk__in=sorted(item_ids)).update(n_open=F("n_open") - n)


def _expire(*, now, study: Study | None = None, limit: int = 500) -> int:
    """Mark started assignments past their lease expired and release their items; each assignment is
    expired by exactly one caller (rows another transaction holds are skipped and left to it)."""
    stale = Assignment.objects.filter(status=Assignment.Status.STARTED, lease_expires_at__lte=now)
    if study is not None:
        stale = stale.filter(study=study)
    if not stale.exists():  # the common case: one index probe, no transaction
        return 0
    with transaction.atomic():
        locked = stale.order_by("pk")
        if connection.features.has_select_for_update_skip_locked:
            locked = locked.select_for_update(skip_locked=True)
        ids = list(locked.values_list("pk", flat=True)[:limit])
        Assignment.objects.filter(pk__in=ids).update(status=Assignment.Status.EXPIRED)
        _release(ids)
    return len(ids)


def _target(config: dict, split: str) -> int:
    target = config["judgments_per_item"]
    return target.get(split, max(target.values()))


def _target_case(config: dict):
    jpi = config["judgments_per_item"]
    return Case(*[When(split=split, then=Value(n)) for split, n in jpi.items()], default=Value(max(jpi.values())),
                output_field=IntegerField())  # fmt: skip


def _window(*, study: Study, config: dict, worker: Worker, skip: set):
    """Available test items, least loaded first (breadth-first: accepted judgments plus open leases), as a
    queryset that follows the index on (study, n_judgments + n_open, index). Expired leases were released
    just before (assignment_start), so the load counts live leases only."""
    return (
        Item.objects.filter(study=study, role=Item.Role.TEST)
        .alias(load=F("n_judgments") + F("n_open"), target=_target_case(config))
        .filter(load__lt=F("target"))
        .exclude(pk__in=skip)
        .exclude(pk__in=Trial.objects.filter(worker=worker, kind=Trial.Kind.TEST).values("item_id"))
        .order_by("study_id", "load", "index")
    )


# What a start reads of an item: its queue position and what the annotator's page shows (not the records).
TRIAL_ITEM_FIELDS = ("id", "index", "role", "split", "n_judgments", "n_open", "ref_image", "p0_image", "p1_image",
                     "expected")  # fmt: skip


def _below_target(items, *, config: dict) -> list[Item]:
    """The items still below their split's target, least loaded first (the queue's order)."""
    items = [item for item in items if item.n_judgments + item.n_open < _target(config, item.split)]
    return sorted(items, key=lambda item: (item.n_judgments + item.n_open, item.index))


def _still_open(item_ids, *, config: dict) -> list[Item]:
    """The given items (whose rows this transaction holds), read afresh, still below their split's target."""
    return _below_target(Item.objects.filter(pk__in=list(item_ids)).only(*TRIAL_ITEM_FIELDS), config=config)


@functools.lru_cache
def _window_sql() -> str:
    """PostgreSQL: the queue (_window) as one prepared statement that locks and returns up to n items, with
    the fields a start needs. Rows that SELECT ... FOR UPDATE returns are their latest committed versions,
    re-checked against the WHERE clause once locked (PostgreSQL's documented READ COMMITTED behaviour), so
    no second read is needed. Ordered like item_load_idx, which serves it."""
    item, trial = Item._meta.db_table, Trial._meta.db_table
    columns = ", ".join(Item._meta.get_field(name).column for name in _window_fields())
    return (f"SELECT {columns} FROM {item} WHERE study_id = %s AND role = 'test' AND n_judgments + n_open < "
            f"CASE WHEN split = 'train' THEN %s WHEN split = 'val' THEN %s ELSE %s END AND NOT (id = ANY(%s::uuid[])) "
            f"AND id NOT IN (SELECT item_id FROM {trial} WHERE worker_id = %s AND kind = 'test') "
            f"ORDER BY study_id, n_judgments + n_open, index LIMIT %s FOR UPDATE OF {item} SKIP LOCKED")  # fmt: skip


@functools.lru_cache
def _window_fields() -> tuple[str, ...]:
    """TRIAL_ITEM_FIELDS in the model's field order, the order Model.from_db expects."""
    return tuple(f.attname for f in Item._meta.concrete_fields if f.attname in TRIAL_ITEM_FIELDS)


def _window_rows(*, study: Study, config: dict, worker: Worker, skip: set, n: int) -> list[Item]:
    jpi = config["judgments_per_item"]
    params = [study.pk, _target(config, "train"), _target(config, "val"), max(jpi.values()), sorted(skip), worker.pk, n]
    with _HotCursor() as cursor:
        cursor.execute(_window_sql(), params)
        rows = cursor.fetchall()
    return [Item.from_db(connection.alias, _window_fields(), row) for row in rows]


def _lease_items(*, study: Study, config: dict, worker: Worker, n: int) -> list[Item]:
    if not connection.features.has_select_for_update_skip_locked:
        # SQLite: the IMMEDIATE transaction already holds the database write lock; count exactly
        ids = list(_window(study=study, config=config, worker=worker, skip=set()).values_list("pk", flat=True)[: 4 * n + 8])
        return _still_open(ids, config=config)[:n]
    taken: list[Item] = []
    rejected: set = set()
    delay, deadline = 0.005, time.monotonic() + LOCK_WAIT_S
    while True:
        held = {item.pk for item in taken} | rejected
        # SKIP LOCKED inside the ordered LIMIT: concurrent assigners each get the next rows nobody holds.
        locked = _window_rows(study=study, config=config, worker=worker, skip=held, n=n - len(taken))
        if locked:
            # Locked rows come back as their latest versions and cannot change under us: this check is exact
            # (and, as the query re-checks its WHERE clause on them, a guard rather than a filter).
            ok = _below_target(locked, config=config)
            taken += ok
            rejected |= {item.pk for item in locked} - {item.pk for item in ok}
            if len(taken) < n:
                continue  # rows others hold were skipped, or some were full: look further down the queue
        # A partial batch is served at once (small HITs near the end of a study). With nothing yet, items
        # that other transactions hold for a few milliseconds are waited for rather than reported as "no
        # work"; a transaction holding no rows blocks nobody, so this cannot livelock.
        if taken or time.monotonic() > deadline or not _window(study=study, config=config, worker=worker, skip=held).exists():
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
    """Heartbeat or resume: the lease moves to now + lease_ttl_s, but never past _lease_bound and never back."""
    lease = max(assignment.lease_expires_at, min(now + timedelta(seconds=config["lease_ttl_s"]), _lease_bound(assignment, config)))
    if lease != assignment.lease_expires_at:
        assignment.lease_expires_at = lease
        Assignment.objects.filter(pk=assignment.pk).update(lease_expires_at=lease)


def _platform_session(platform: str, info: dict) -> str | None:
    """The platform's own session of a start: Prolific SESSION_ID, MTurk assignmentId (None: anonymous and
    simulated workers, whose server-issued worker id is itself the secret)."""
    if platform == Platform.PROLIFIC:
        return info.get("session_id")
    if platform == Platform.MTURK:
        return info.get("assignment_id")
    return None


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
    open_ = Assignment.objects.filter(study=study, status=Assignment.Status.STARTED, client_hash=client,
                                      lease_expires_at__gt=now)  # fmt: skip
    if open_.count() >= cap:
        raise ApplicationError(f"this network already holds {cap} unfinished assignments in this study; finish or "
                               f"return one first", {"code": "too_many_open", "limit": cap}, status_code=409)  # fmt: skip


@dataclass
class StartResult:
    assignment: Assignment
    created: bool
    trials: list[Trial] | None = None  # a new assignment's trials, their items loaded (for the response body)


def assignment_start(*, study: Study, platform: str, worker_id: str, platform_info: dict | None = None,
                     is_simulated: bool = False, client_ip: str | None = None) -> StartResult:  # fmt: skip
    """Resume the worker's active assignment in this study, or lease a new batch: practice items first, then
    test items with sentinels mixed in at random positions, each trial's left/right side balanced.

    A Prolific or MTurk worker resumes only in the same platform session (SESSION_ID, assignmentId): a
    worker id alone is semi-public, so a start in another session ends the live HIT (returned, its items
    released) and starts afresh, never handing out the old token. A session whose HIT was submitted or
    rejected sees that outcome again instead of a new HIT. `client_ip` (the API's core.net.client_ip): at most OPEN_PER_CLIENT open assignments
    per client and study (simulated workers, run by the researcher, are not capped)."""
    if study.status != Study.Status.ACTIVE:
        raise ApplicationError(f"this study is {study.get_status_display().lower()} and takes no work now",
                               {"code": "study_inactive"}, status_code=409)  # fmt: skip
    config = study.collection
    if (platform == Platform.SIMULATED) != config["simulation"]:
        message = ("this study takes only simulated workers" if config["simulation"]
                   else "simulated workers are only admitted to simulation studies (config simulation=true)")  # fmt: skip
        raise ApplicationError(message, {"code": "simulation"}, status_code=403)
    allowed = config["platforms"]
    if platform != Platform.SIMULATED and platform not in allowed:
        raise ApplicationError(f"this study admits only {', '.join(allowed)} participants",
                               {"code": "platform", "valid": allowed}, status_code=403)  # fmt: skip
    info = platform_info_clean(platform=platform, info=platform_info or {})
    client = client_hash(client_ip) if client_ip and platform != Platform.SIMULATED else ""
    worker = worker_get_or_create(platform=platform, external_id=worker_id,
                                  is_simulated=is_simulated or platform == Platform.SIMULATED)  # fmt: skip
    now = timezone.now()
    _expire(now=now, study=study)  # expired leases free their items now, not at the next sweep
    with transaction.atomic():
        active = Assignment.objects.select_for_update().filter(study=study, worker=worker,
                                                               status=Assignment.Status.STARTED).first()  # fmt: skip
        session_key = _platform_session(platform, info)
        if active is not None:
            superseded = session_key is not None and _platform_session(platform, active.platform_info) != session_key
            if active.lease_expires_at > now and not superseded:
                _extend_lease(active, config, now)
                return StartResult(active, False)
            # Past its lease, or another platform session of this worker id: the old HIT ends here and its items
            # go back to the queue (its answers stay). A worker id is semi-public, so a stranger's session must
            # neither see the live HIT (its token) nor lock the real participant out of the study; the newest
            # session wins, and a participant whose HIT a stranger ended just starts again.
            status = Assignment.Status.RETURNED if superseded and active.lease_expires_at > now else Assignment.Status.EXPIRED
            Assignment.objects.filter(pk=active.pk).update(status=status)
            _release([active.pk])
            if superseded:
                logger.warning("assignment %s ended: its worker started again in another %s session", active.pk, platform)
        if session_key:  # the same Prolific session / MTurk assignment: show its outcome again
            earlier = Assignment.objects.filter(study=study, worker=worker,
                                                status__in=(Assignment.Status.SUBMITTED, Assignment.Status.REJECTED))  # fmt: skip
            for candidate in earlier:
                if session_key in (candidate.platform_info.get("session_id"), candidate.platform_info.get("assignment_id")):
                    return StartResult(candidate, False)
        if client:
            _check_open_per_client(study=study, client=client, now=now)
        tests = _lease_items(study=study, config=config, worker=worker, n=config["hit_size"])
        if not tests:
            raise ApplicationError("no work is available in this study right now", {"code": "no_work"}, status_code=409)
        Item.objects.filter(pk__in=sorted(item.pk for item in tests)).update(n_open=F("n_open") + 1)
        extra = list(Item.objects.filter(study=study, role__in=(Item.Role.SENTINEL, Item.Role.PRACTICE))
                     .only(*TRIAL_ITEM_FIELDS).order_by("index"))  # fmt: skip
        sentinel_pool = [item for item in extra if item.role == Item.Role.SENTINEL]
        n_sent = 0
        if sentinel_pool and config["sentinel_rate"] > 0:
            n_sent = min(len(sentinel_pool), max(1, round(sentinels_per_hit(config) * len(tests) / config["hit_size"])))
        sentinels = _rng.sample(sentinel_pool, n_sent)
        practice = [item for item in extra if item.role == Item.Role.PRACTICE] if config["practice"] else []
        counted = [(item, Trial.Kind.TEST) for item in tests] + [(item, Trial.Kind.SENTINEL) for item in sentinels]
        _rng.shuffle(counted)
        sequence = [(item, Trial.Kind.PRACTICE) for item in practice] + counted
        if study.kind == "2afc":  # p0 left or right, balanced within the HIT
            swaps = [i % 2 == 1 for i in range(len(sequence))]
            _rng.shuffle(swaps)
        else:  # JND: the reference (p0) is always shown first, as in the paper
            swaps = [False] * len(sequence)
        assignment = Assignment.objects.create(
            study=study, worker=worker, platform=platform, platform_info=info, n_trials=len(sequence),
            lease_expires_at=now + timedelta(seconds=_first_lease_s(config)), client_hash=client,
        )  # fmt: skip
        trials = [Trial(assignment=assignment, worker=worker, item=item, position=pos, kind=kind, swap=swap,
                        created_at=now, updated_at=now)
                  for pos, ((item, kind), swap) in enumerate(zip(sequence, swaps, strict=True))]  # fmt: skip
        _insert_rows(trials)
    logger.info("assignment %s: %d test, %d sentinel, %d practice trials for worker %s", assignment.pk,
                len(tests), len(sentinels), len(practice), worker.pk)  # fmt: skip
    return StartResult(assignment, True, trials)


def _locked_assignment(token: str) -> Assignment:
    # of=("self",): lock the assignment row only. Without it the joined study row is locked too, which
    # serialises every answer in a study and deadlocks against assignment starts' foreign-key checks.
    assignment = Assignment.objects.select_for_update(of=("self",)).select_related("study").filter(token=token).first()
    if assignment is None:
        raise ApplicationError("assignment not found", status_code=404)
    return assignment


def _require_live(assignment: Assignment, now) -> None:
    # An assignment past its lease is refused here; its status (and its items' open leases) change in
    # _expire, run by the next start in the study and by the periodic sweep.
    if assignment.status == Assignment.Status.EXPIRED or (
        assignment.status == Assignment.Status.STARTED and assignment.lease_expires_at <= now
    ):
        raise ApplicationError("this assignment expired; start a new one", {"code": "expired"}, status_code=410)
    if assignment.status != Assignment.Status.STARTED:
        if assignment.status == Assignment.Status.RETURNED:  # given back, or ended by a newer session of the worker
            raise ApplicationError("this assignment was given back or continued in another session; reload the page to "
                                   "go on with a new one", {"code": assignment.status}, status_code=409)  # fmt: skip
        raise ApplicationError(f"this assignment is {assignment.status}", {"code": assignment.status}, status_code=409)


def assignment_heartbeat(*, token: str) -> Assignment:
    """Extend the lease of a live assignment by the study's TTL, but no further than lease_ttl_s after its
    last answer (the short first lease before any): heartbeats bridge a pause, they do not hold items."""
    now = timezone.now()
    with transaction.atomic():
        assignment = _locked_assignment(token)
        _require_live(assignment, now)
        _extend_lease(assignment, assignment.study.collection, now)
    return assignment


def assignment_return(*, token: str) -> Assignment:
    """The worker gives the assignment back: its unanswered items are free at once."""
    with transaction.atomic():
        assignment = _locked_assignment(token)
        if assignment.status == Assignment.Status.RETURNED:
            return assignment
        _require_live(assignment, timezone.now())
        assignment.status = Assignment.Status.RETURNED
        Assignment.objects.filter(pk=assignment.pk).update(status=assignment.status)
        _release([assignment.pk])
    return assignment


def assignments_expire_stale(*, now=None) -> int:
    """Mark started assignments past their lease as expired. Housekeeping only: expired leases already
    stop counting the moment they pass."""
    now = now or timezone.now()
    total = 0
    while n := _expire(now=now):
        total += n
    return total


# --- judgments ------------------------------------------------------------------------------------------
@dataclass
class SubmitResult:
    judgment: Judgment
    created: bool
    n_answered: int
    n_trials: int


def _number(value, field: str, *, low: float, high: float, required: bool = True) -> float | None:
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ApplicationError(f"{field} must be a number in [{low:g}, {high:g}]", {"field": field})
    return float(value)


def timing_flagged(*, timing: dict, durations: dict, display: dict) -> bool:
    """JND: a trial is flagged when any measured phase is off its target by more than one frame."""
    refresh = display.get("refresh_hz") if isinstance(display, dict) else None
    frame_ms = 1000.0 / float(refresh) if isinstance(refresh, (int, float)) and 20 <= refresh <= 500 else 1000.0 / 60
    for phase, target in timing.items():
        measured = durations.get(phase) if isinstance(durations, dict) else None
        if not isinstance(measured, (int, float)) or isinstance(measured, bool) or abs(measured - target) > frame_ms:
            return True
    return False


def _replay(*, token: str, trial_id: str, idempotency_key: str) -> SubmitResult:
    """After a refused insert: the answer stored under this key (a retry that raced the first attempt),
    or the reason it cannot be stored."""
    existing = (Judgment.objects.select_related("trial", "assignment")
                .filter(assignment__token=token, idempotency_key=idempotency_key).first())  # fmt: skip
    if existing is not None:
        if existing.trial.public_id != trial_id:
            raise ApplicationError("idempotency_key was already used for another trial",
                                   {"field": "idempotency_key"}, status_code=409)  # fmt: skip
        return SubmitResult(existing, False, existing.assignment.n_answered, existing.assignment.n_trials)
    raise ApplicationError("this trial was already answered", {"field": "trial", "code": "answered"}, status_code=409)


# --- the answer path: hand-written SQL ----------------------------------------------------------------
# Storing an answer is the platform's hottest write (one per trial per annotator). It runs five short
# statements written out here instead of through the query compiler, whose per-statement cost was most of
# an answer's CPU time (docs/platform.md, "Performance"). The statements are plain SQL that PostgreSQL and
# SQLite both run; values are prepared by the models' own fields, and the INSERT covers every column of
# Judgment, so the row is what `Judgment.objects.create` would write.
@dataclass
class _AnswerRow:
    trial_id: object
    trial_kind: str
    swap: bool
    answered: bool
    item_id: object
    pk: object  # the assignment's
    status: str
    lease_expires_at: object
    worker_id: object
    n_answered: int
    n_trials: int
    study_id: object
    study_kind: str
    study_config: dict
    expected: str
    judgment_id: object
    judgment_key: str | None


class _HotCursor:
    """Runs the answer path's statements. On PostgreSQL: a server-side-binding psycopg cursor whose
    statements are prepared once per connection (planning them cost PostgreSQL more than running them;
    Django leaves prepared statements off, and apps.py enables them for statements that ask); errors come
    out as Django's. Elsewhere: Django's cursor."""

    def __enter__(self):
        connection.ensure_connection()
        self.prepared = connection.vendor == "postgresql" and connection.connection.prepare_threshold is not None
        if self.prepared:
            import psycopg

            self.errors = connection.wrap_database_errors
            self.errors.__enter__()
            self.cursor = psycopg.Cursor(connection.connection)
        else:
            self.cursor = connection.cursor()
        return self

    def execute(self, sql: str, params: list) -> None:
        if self.prepared:
            self.cursor.execute(sql, params, prepare=True)
        else:
            self.cursor.execute(sql, params)

    def fetchone(self):
        return self.cursor.fetchone()

    def fetchall(self):
        return self.cursor.fetchall()

    def __exit__(self, *exc):
        self.cursor.close()
        if self.prepared:
            return self.errors.__exit__(*exc)
        return False


def _uuid(value):
    return value if value is None or isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _aware(value):
    if isinstance(value, str):  # SQLite
        value = datetime.fromisoformat(value)
    return value if value is None or value.tzinfo else value.replace(tzinfo=UTC)


@functools.lru_cache
def _answer_sql(for_update: bool) -> str:
    """The answer path's read (built once per process)."""
    t, a, s, i, j = (model._meta.db_table for model in (Trial, Assignment, Study, Item, Judgment))
    sql = (f"SELECT t.id, t.kind, t.swap, t.answered, t.item_id, a.id, a.status, a.lease_expires_at, a.worker_id, "
           f"a.n_answered, a.n_trials, s.id, s.kind, s.config, i.expected, j.id, j.idempotency_key "
           f"FROM {t} t JOIN {a} a ON a.id = t.assignment_id JOIN {s} s ON s.id = a.study_id "
           f"JOIN {i} i ON i.id = t.item_id LEFT JOIN {j} j ON j.trial_id = t.id "
           f"WHERE a.token = %s AND t.public_id = %s")  # fmt: skip
    # FOR UPDATE OF a: the assignment row only, so answers to other assignments never wait
    return sql + " FOR UPDATE OF a" if for_update else sql


@functools.lru_cache
def _insert_sql(model, vendor: str, rows: int = 1) -> str:
    """INSERT of every column of `model` for `rows` rows, in concrete-field order (built once per process)."""
    quote = connection.ops.quote_name
    fields = model._meta.concrete_fields
    row = f"({', '.join(['%s'] * len(fields))})"
    return (f"INSERT INTO {model._meta.db_table} ({', '.join(quote(f.column) for f in fields)}) "
            f"VALUES {', '.join([row] * rows)}")  # fmt: skip


def _insert_params(objs) -> list:
    """Every column's value of each object, prepared by its model field (what `save()` would write)."""
    fields = type(objs[0])._meta.concrete_fields
    return [f.get_db_prep_save(getattr(obj, f.attname), connection) for obj in objs for f in fields]


def _insert_rows(objs: list, batch: int = 500) -> None:
    """Insert model instances (primary keys and timestamps already set) with multi-row INSERTs: the
    assignment start's trials, without the query compiler's per-row cost."""
    model = type(objs[0])
    with _HotCursor() as cursor:
        for k in range(0, len(objs), batch):
            chunk = objs[k : k + batch]
            cursor.execute(_insert_sql(model, connection.vendor, len(chunk)), _insert_params(chunk))
    for obj in objs:
        obj._state.adding, obj._state.db = False, connection.alias


def _answer_row(token: str, trial_id: str) -> _AnswerRow | None:
    sql = _answer_sql(connection.features.has_select_for_update_of)
    with _HotCursor() as cursor:
        cursor.execute(sql, [token, trial_id])
        row = cursor.fetchone()
    if row is None:
        return None
    (t_id, t_kind, swap, answered, item_id, a_id, status, lease, worker_id, n_answered, n_trials, s_id, s_kind, config,
     expected, j_id, j_key) = row  # fmt: skip
    return _AnswerRow(_uuid(t_id), t_kind, bool(swap), bool(answered), _uuid(item_id), _uuid(a_id), status, _aware(lease),
                      _uuid(worker_id), n_answered, n_trials, _uuid(s_id), s_kind,
                      json.loads(config) if isinstance(config, str) else config, expected, _uuid(j_id), j_key)  # fmt: skip


@functools.lru_cache
def _store_answer_sql(vendor: str, test: bool) -> list[str]:
    """The answer path's writes (built once per process): the judgment, the trial marked answered, the
    assignment's count and lease, and for a test trial the item's counts. On PostgreSQL one statement (the
    writes as data-modifying CTEs, each run exactly once): one round trip instead of four."""
    trial, assignment, item = (model._meta.db_table for model in (Trial, Assignment, Item))
    writes = [
        _insert_sql(Judgment, vendor),
        f"UPDATE {trial} SET answered = %s WHERE id = %s",
        # The lease moves forward only once less than half of it is left, so that most answers leave every
        # indexed column of the assignment alone (a heap-only update).
        # last_answer_at (unindexed) bounds what heartbeats may extend the lease to.
        f"UPDATE {assignment} SET n_answered = n_answered + 1, last_answer_at = %s, lease_expires_at = "
        f"CASE WHEN lease_expires_at < %s THEN %s ELSE lease_expires_at END WHERE id = %s",
    ]  # fmt: skip
    if test:  # the lease becomes a judgment: load (n_judgments + n_open) is unchanged
        writes.append(f"UPDATE {item} SET n_judgments = n_judgments + 1, n_open = n_open - 1 WHERE id = %s")
    if vendor != "postgresql":
        return writes
    return ["WITH " + ", ".join(f"w{k} AS ({sql})" for k, sql in enumerate(writes)) + " SELECT 1"]


def _store_answer(judgment: Judgment, row: _AnswerRow, lease_expires_at, renew_before) -> None:
    prep = lambda field, value: field.get_db_prep_save(value, connection)  # noqa: E731
    pk = lambda model, value: model._meta.pk.get_db_prep_value(value, connection)  # noqa: E731
    lease = Assignment._meta.get_field("lease_expires_at")
    test = row.trial_kind == Trial.Kind.TEST
    params = [
        _insert_params([judgment]),
        [True, pk(Trial, row.trial_id)],
        [prep(lease, judgment.created_at), prep(lease, renew_before), prep(lease, lease_expires_at), pk(Assignment, row.pk)],
    ] + ([[pk(Item, row.item_id)]] if test else [])  # fmt: skip
    statements = _store_answer_sql(connection.vendor, test)
    if len(statements) == 1:
        params = [[value for group in params for value in group]]
    with _HotCursor() as cursor:
        for sql, values in zip(statements, params, strict=True):
            cursor.execute(sql, values)
    judgment._state.adding = False
    judgment._state.db = connection.alias


def judgment_submit(*, token: str, trial_id: str, response: str, rt_ms, idempotency_key: str,
                    client_shown_at=None, client_answered_at=None, durations: dict | None = None,
                    display: dict | None = None) -> SubmitResult:  # fmt: skip
    """Store one answered trial. Idempotent: the same key returns the stored judgment (created=False);
    a second answer to an answered trial is refused. Acknowledged only after the transaction commits.

    One statement finds the trial, its item, any stored answer and the study, and locks the assignment
    row (only that row), so answers to one assignment are serialised and answers to others never wait.
    The unique constraints (one judgment per trial; one per assignment and key) are the final word: an
    insert they refuse is resolved as a replay or a conflict."""
    if not isinstance(idempotency_key, str) or not 8 <= len(idempotency_key) <= 64:
        raise ApplicationError("idempotency_key must be 8-64 characters", {"field": "idempotency_key"})
    durations = durations or {}
    display = display or {}
    if not isinstance(durations, dict) or not isinstance(display, dict) or len(str(display)) > 4000 or len(str(durations)) > 2000:
        raise ApplicationError("durations and display must be small JSON objects", {"field": "display"})
    if not isinstance(trial_id, str) or not isinstance(token, str):
        raise ApplicationError("trial and token must be strings", {"field": "trial"})
    now = timezone.now()
    try:
        with transaction.atomic():
            row = _answer_row(token, trial_id)
            if row is None:
                if not Assignment.objects.filter(token=token).exists():
                    raise ApplicationError("assignment not found", status_code=404)
                if Judgment.objects.filter(assignment__token=token, idempotency_key=idempotency_key).exists():
                    raise ApplicationError("idempotency_key was already used for another trial",
                                           {"field": "idempotency_key"}, status_code=409)  # fmt: skip
                raise ApplicationError("this trial is not part of the assignment", {"field": "trial"})
            if row.judgment_id is not None and row.judgment_key == idempotency_key:
                return SubmitResult(Judgment.objects.get(pk=row.judgment_id), False, row.n_answered, row.n_trials)
            _require_live(row, now)
            if row.answered or row.judgment_id is not None:
                raise ApplicationError("this trial was already answered", {"field": "trial", "code": "answered"},
                                       status_code=409)  # fmt: skip
            kind = row.study_kind
            config = collection_config(kind, row.study_config)
            if response not in RESPONSES[kind]:
                raise ApplicationError(f"response must be one of {list(RESPONSES[kind])}", {"field": "response"})
            rt = _number(rt_ms, "rt_ms", low=0, high=MAX_RT_MS)
            shown = _number(client_shown_at, "client_shown_at", low=0, high=1e14, required=False)
            answered_at = _number(client_answered_at, "client_answered_at", low=0, high=1e14, required=False)
            if kind == "2afc":
                choice = int((response == "right") != row.swap)
                correct = None if not row.expected else (f"p{choice}" == row.expected)
                flagged = False
            else:
                choice = int(response == "same")
                correct = None if not row.expected else (response == row.expected)
                flagged = timing_flagged(timing=config["timing"], durations=durations, display=display)
            judgment = Judgment(
                id=uuid.uuid4(), created_at=now, updated_at=now, trial_id=row.trial_id, assignment_id=row.pk,
                item_id=row.item_id, worker_id=row.worker_id, kind=row.trial_kind, idempotency_key=idempotency_key,
                response=response, choice=choice, presented_left="p1" if row.swap else "p0",
                correct=correct if row.trial_kind != Trial.Kind.TEST else None, rt_ms=rt, client_shown_at=shown,
                client_answered_at=answered_at, durations=durations, timing_flagged=flagged, display=display,
            )  # fmt: skip
            ttl = config["lease_ttl_s"]
            _store_answer(judgment, row, now + timedelta(seconds=ttl), now + timedelta(seconds=ttl / 2))
            if row.trial_kind == Trial.Kind.TEST and config["training"]["every"] is not None:
                study_id = row.study_id  # studies that do not train skip the trigger's reads
                transaction.on_commit(lambda: _judgment_added(study_id))
    except IntegrityError:
        # a concurrent request with the same key (a client retry) or for the same trial committed first
        return _replay(token=token, trial_id=trial_id, idempotency_key=idempotency_key)
    return SubmitResult(judgment, True, row.n_answered + 1, row.n_trials)


def _judgment_added(study_id) -> None:
    """Hook for continuous training (training.services decides whether a retrain is due)."""
    from training.triggers import judgments_added

    judgments_added(study_id=study_id)


# --- completion and quality control ---------------------------------------------------------------------
def qc_evaluate(*, assignment: Assignment, rule: dict) -> dict:
    """Sentinel accuracy, side bias and median RT of one assignment, and whether the rule excludes it."""
    rows = list(assignment.judgments.exclude(kind=Trial.Kind.PRACTICE).values("kind", "correct", "response", "rt_ms"))
    sentinels = [r for r in rows if r["kind"] == Trial.Kind.SENTINEL]
    n_correct = sum(1 for r in sentinels if r["correct"])
    accuracy = n_correct / len(sentinels) if sentinels else None
    first = RESPONSES[assignment.study.kind][0]
    side = sum(1 for r in rows if r["response"] == first) / len(rows) if rows else None
    rts = sorted(r["rt_ms"] for r in rows)
    median_rt = (rts[(len(rts) - 1) // 2] + rts[len(rts) // 2]) / 2 if rts else None
    reasons = []
    min_acc = rule.get("min_sentinel_accuracy")
    if min_acc is not None and accuracy is not None and accuracy + 1e-9 < min_acc:
        reasons.append(f"sentinel accuracy {n_correct}/{len(sentinels)} below {min_acc:.3f}")
    max_bias = rule.get("max_side_bias")
    if max_bias is not None and side is not None and abs(side - 0.5) > max_bias:
        reasons.append(f"side bias {side:.2f} beyond 0.5 +/- {max_bias}")
    min_rt = rule.get("min_median_rt_ms")
    if min_rt is not None and median_rt is not None and median_rt < min_rt:
        reasons.append(f"median response time {median_rt:.0f} ms below {min_rt} ms")
    return {"sentinels": len(sentinels), "sentinels_correct": n_correct, "sentinel_accuracy": accuracy,
            f"fraction_{first}": side, "median_rt_ms": median_rt, "rule": rule, "excluded": bool(reasons),
            "reasons": reasons}  # fmt: skip


def _take_back_counts(assignment: Assignment) -> None:
    items = assignment.judgments.filter(kind=Trial.Kind.TEST).values_list("item_id", flat=True)
    Item.objects.filter(pk__in=list(items), n_judgments__gt=0).update(n_judgments=F("n_judgments") - 1)


def _mturk_host(submit_to) -> bool:
    try:
        return urlparse(str(submit_to or "").rstrip("/"))._replace(path="").geturl() in settings.MTURK_SUBMIT_HOSTS
    except ValueError:
        return False


def completion_for(assignment: Assignment) -> dict:
    """What the annotator's page does after the server holds every trial. Never raises on what is stored: a
    completion URL that fails today's rule (studies.collection.completion_url_problem), or an MTurk
    turkSubmitTo that is not an MTurk host, leaves the redirect or form out, and the page shows the code."""
    code = assignment.completion_code
    out = {"code": code, "platform": assignment.platform}
    info = assignment.platform_info if isinstance(assignment.platform_info, dict) else {}
    if assignment.platform == Platform.PROLIFIC:
        redirect = completion_redirect(assignment.study.config, code)
        if redirect is None:
            logger.warning("study %s: stored prolific_completion_url fails validation; no redirect", assignment.study_id)
        else:
            out["redirect_url"] = redirect
    elif assignment.platform == Platform.MTURK and info.get("assignment_id") and _mturk_host(info.get("turk_submit_to")):
        out["mturk_form"] = {
            "action": str(info["turk_submit_to"]).rstrip("/") + "/mturk/externalSubmit",
            "fields": {"assignmentId": info["assignment_id"], "completion_code": code},
        }
    return out


def assignment_submit(*, token: str) -> Assignment:
    """Finish an assignment once every trial is stored; apply the study's exclusion rule. Idempotent."""
    with transaction.atomic():
        assignment = _locked_assignment(token)
        if assignment.status == Assignment.Status.SUBMITTED:
            return assignment
        _require_live(assignment, timezone.now())
        missing = list(assignment.trials.filter(answered=False).values_list("position", flat=True)[:20])
        if missing:
            raise ApplicationError(f"{assignment.n_trials - assignment.n_answered} trials are not stored yet",
                                   {"code": "incomplete", "missing_positions": missing}, status_code=409)  # fmt: skip
        study = assignment.study
        config = study.collection
        qc = qc_evaluate(assignment=assignment, rule=config["exclusion"])
        assignment.status = Assignment.Status.SUBMITTED
        assignment.submitted_at = timezone.now()
        assignment.completion_code = config["completion_code"] or ""
        assignment.excluded = qc["excluded"]
        assignment.qc = qc
        assignment.save(update_fields=["status", "submitted_at", "completion_code", "excluded", "qc", "updated_at"])
        if assignment.excluded:
            _take_back_counts(assignment)
            logger.info("assignment %s excluded: %s", assignment.pk, "; ".join(qc["reasons"]))
    return assignment


def assignment_reject(*, assignment: Assignment, reason: str = "rejected by the researcher") -> Assignment:
    """A researcher rejects an assignment: its data stay, flagged, and its items reopen (a started one's
    unanswered items are released at once, as on a return)."""
    with transaction.atomic():
        assignment = Assignment.objects.select_for_update().get(pk=assignment.pk)
        if assignment.status == Assignment.Status.REJECTED:
            return assignment
        if assignment.status == Assignment.Status.STARTED:
            _release([assignment.pk])
        if not assignment.excluded:
            _take_back_counts(assignment)
        assignment.status = Assignment.Status.REJECTED
        assignment.excluded = True
        assignment.qc = {**assignment.qc, "excluded": True, "reasons": [*assignment.qc.get("reasons", []), reason]}
        assignment.save(update_fields=["status", "excluded", "qc", "updated_at"])
    return assignment
