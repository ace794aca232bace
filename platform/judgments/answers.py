"""The answer path: answered trials of one HIT stored (judgments_submit_batch; judgment_submit for one),
each idempotent on the client's key, together in one transaction.

The answer's fields are defined once, in ANSWER_FIELDS: `answer_input` checks a request body's types
against it (the API's hand check, kept because the endpoint is the hottest one: no serializer per answer),
`judgment_submit` checks ranges and sizes from it, and the API's OpenAPI serializer is generated from it.
The statements that store an answer are hand-written (judgments.sql). A stored test judgment sends
`judgments.signals.judgment_accepted` once the transaction commits.
"""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import dataclass
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from core.exceptions import ApplicationError
from judgments import sql
from judgments.assignments import require_live
from judgments.models import RESPONSES, Assignment, Judgment, Trial
from judgments.signals import judgment_accepted
from judgments.stopping import item_vote_after_answer, stopping_on
from studies.collection import collection_config

MAX_RT_MS = 3600 * 1000.0
CLIENT_TIME_MAX = 1e14  # client clocks (ms since the epoch, or since page load)


# --- the answer's input contract ------------------------------------------------------------------------
@dataclass(frozen=True)
class AnswerField:
    """One field of an answer. kind: "string" (min_length..max_length characters), "number" (a finite
    number in low..high), "object" (a small JSON object; `numbers`: its values must be numbers)."""

    name: str
    kind: str
    required: bool = True
    min_length: int = 1
    max_length: int = 0
    low: float = 0
    high: float = 0.0
    numbers: bool = False
    help: str = ""


ANSWER_FIELDS = (
    AnswerField("trial", "string", max_length=64),
    AnswerField("response", "string", max_length=16, help="2AFC: left / right; JND: same / different"),
    AnswerField("idempotency_key", "string", min_length=8, max_length=64),
    AnswerField("rt_ms", "number", high=MAX_RT_MS),
    AnswerField("client_shown_at", "number", required=False, high=CLIENT_TIME_MAX),
    AnswerField("client_answered_at", "number", required=False, high=CLIENT_TIME_MAX),
    AnswerField(
        "durations",
        "object",
        required=False,
        numbers=True,
        help="JND: measured on-screen ms for ref_ms, gap_ms, distorted_ms",
    ),
    AnswerField("display", "object", required=False, help="viewport, devicePixelRatio, refresh_hz, ..."),
)
FIELD = {field.name: field for field in ANSWER_FIELDS}
OBJECTS_OF_NUMBERS = tuple(field for field in ANSWER_FIELDS if field.numbers)
DISPLAY_MAX_CHARS, DURATIONS_MAX_CHARS = 4000, 2000


def _finite(value) -> float | None:
    """`value` as a finite float, or None: JSON numbers (an integer of 400 digits is valid JSON, and float()
    of it raises OverflowError) and numeric strings."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        value = float(value)
    except (ValueError, OverflowError):
        return None
    return value if math.isfinite(value) else None


def answer_input(data) -> dict:
    """A request body's answer fields (ANSWER_FIELDS), checked for type; 400 naming the field otherwise.
    Ranges and sizes are judgment_submit's to check."""
    if not isinstance(data, dict):
        raise ApplicationError("send a JSON object", {"field": "body"})
    out = {}
    for field in ANSWER_FIELDS:
        key, value = field.name, data.get(field.name)
        if field.kind == "string":
            if not isinstance(value, str) or not value or len(value) > field.max_length:
                raise ApplicationError(
                    f"{key} must be a string of 1-{field.max_length} characters", {"field": key}
                )
        elif field.kind == "number":
            if value is not None or field.required:
                value = _finite(value)
                if value is None:
                    raise ApplicationError(f"{key} must be a number", {"field": key})
        elif value is not None and not isinstance(value, dict):
            raise ApplicationError(f"{key} must be an object", {"field": key})
        out[key] = value
    for field in OBJECTS_OF_NUMBERS:
        for name, number in (out[field.name] or {}).items():
            if isinstance(number, str) or _finite(number) is None:
                raise ApplicationError(f"{field.name}.{name} must be a number", {"field": field.name})
    return out


def _number(value, field: str, *, required: bool = True) -> float | None:
    if value is None and not required:
        return None
    low, high = FIELD[field].low, FIELD[field].high
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ApplicationError(f"{field} must be a number in [{low:g}, {high:g}]", {"field": field})
    return float(value)


def _check_sizes(*, token, trial_id, idempotency_key, durations: dict, display: dict) -> None:
    key = FIELD["idempotency_key"]
    if not isinstance(idempotency_key, str) or not key.min_length <= len(idempotency_key) <= key.max_length:
        raise ApplicationError(
            f"idempotency_key must be {key.min_length}-{key.max_length} characters",
            {"field": "idempotency_key"},
        )
    for name, value, most in (
        ("durations", durations, DURATIONS_MAX_CHARS),
        ("display", display, DISPLAY_MAX_CHARS),
    ):
        try:  # a number past float's range parsed as infinity, which neither JSON nor jsonb can hold
            written = json.dumps(value, allow_nan=False) if isinstance(value, dict) else None
        except ValueError:
            raise ApplicationError(f"{name} holds a number out of range", {"field": name}) from None
        if written is None or len(written) > most:
            raise ApplicationError("durations and display must be small JSON objects", {"field": name})
    if not isinstance(trial_id, str) or not isinstance(token, str):
        raise ApplicationError("trial and token must be strings", {"field": "trial"})


# --- storing an answer ----------------------------------------------------------------------------------
@dataclass
class SubmitResult:
    judgment: Judgment
    created: bool
    n_answered: int
    n_trials: int


@dataclass
class BatchOutcome:
    """One answer of a batch: stored (`result`, a replay included) or refused (`error`)."""

    trial: str
    result: SubmitResult | None = None
    error: ApplicationError | None = None


def timing_flagged(*, timing: dict, durations: dict, display: dict) -> bool:
    """JND: a trial is flagged when any measured phase is off its target by more than one frame."""
    refresh = display.get("refresh_hz") if isinstance(display, dict) else None
    frame_ms = (
        1000.0 / float(refresh) if isinstance(refresh, (int, float)) and 20 <= refresh <= 500 else 1000.0 / 60
    )
    for phase, target in timing.items():
        measured = durations.get(phase) if isinstance(durations, dict) else None
        if (
            not isinstance(measured, (int, float))
            or isinstance(measured, bool)
            or abs(measured - target) > frame_ms
        ):
            return True
    return False


def _key_used() -> ApplicationError:
    return ApplicationError(
        "idempotency_key was already used for another trial", {"field": "idempotency_key"}, status_code=409
    )


def _replay(*, token: str, trial_id: str, idempotency_key: str) -> SubmitResult:
    """After a refused insert: the answer stored under this key (a retry that raced the first attempt),
    or the reason it cannot be stored."""
    existing = (
        Judgment.objects.select_related("trial", "assignment")
        .filter(assignment__token=token, idempotency_key=idempotency_key)
        .first()
    )
    if existing is not None:
        if existing.trial.public_id != trial_id:
            raise _key_used()
        return SubmitResult(existing, False, existing.assignment.n_answered, existing.assignment.n_trials)
    raise ApplicationError(
        "this trial was already answered", {"field": "trial", "code": "answered"}, status_code=409
    )


def _row_missing(*, token: str, idempotency_key: str) -> ApplicationError:
    """Why the answer path found no trial of an existing assignment (_store_together answers 404 for an
    unknown one first): a key spent on another trial, or a trial of another assignment."""
    if Judgment.objects.filter(assignment__token=token, idempotency_key=idempotency_key).exists():
        return _key_used()
    return ApplicationError("this trial is not part of the assignment", {"field": "trial"})


def judgment_build(
    row: sql.AnswerRow,
    config: dict,
    *,
    now,
    response: str,
    rt_ms,
    idempotency_key: str,
    client_shown_at,
    client_answered_at,
    durations: dict,
    display: dict,
) -> Judgment:
    """The judgment an answer stores: the response checked against the study's kind, mapped from screen
    side to p0/p1, scored against the item's expected answer (practice and sentinels), timing-flagged
    (JND)."""
    kind = row.study_kind
    if response not in RESPONSES[kind]:
        raise ApplicationError(f"response must be one of {list(RESPONSES[kind])}", {"field": "response"})
    rt = _number(rt_ms, "rt_ms")
    shown = _number(client_shown_at, "client_shown_at", required=False)
    answered_at = _number(client_answered_at, "client_answered_at", required=False)
    if kind == "2afc":
        choice = int((response == "right") != row.swap)
        correct = None if not row.expected else (f"p{choice}" == row.expected)
        flagged = False
    else:
        choice = int(response == "same")
        correct = None if not row.expected else (response == row.expected)
        flagged = timing_flagged(timing=config["timing"], durations=durations, display=display)
    return sql.model_new(
        Judgment,
        {
            "id": uuid.uuid4(),
            "created_at": now,
            "updated_at": now,
            "trial_id": row.trial_id,
            "assignment_id": row.pk,
            "item_id": row.item_id,
            "worker_id": row.worker_id,
            "kind": row.trial_kind,
            "idempotency_key": idempotency_key,
            "response": response,
            "choice": choice,
            "presented_left": "p1" if row.swap else "p0",
            "correct": correct if row.trial_kind != Trial.Kind.TEST else None,
            "rt_ms": rt,
            "client_shown_at": shown,
            "client_answered_at": answered_at,
            "durations": durations,
            "timing_flagged": flagged,
            "display": display,
        },
    )


def _check_answerable(
    row: sql.AnswerRow | None, *, token: str, idempotency_key: str, now
) -> SubmitResult | None:
    """The stored result when this is a retry of a stored answer (same key); raises when the trial cannot
    take an answer (no such trial, assignment no longer live, trial already answered); None when it can."""
    if row is None:
        raise _row_missing(token=token, idempotency_key=idempotency_key)
    if row.judgment_id is not None and row.judgment_key == idempotency_key:
        return SubmitResult(Judgment.objects.get(pk=row.judgment_id), False, row.n_answered, row.n_trials)
    require_live(row, now)
    if row.answered or row.judgment_id is not None:
        raise ApplicationError(
            "this trial was already answered", {"field": "trial", "code": "answered"}, status_code=409
        )
    return None


def _announce_and_vote(judgments: list[Judgment], config: dict, *, study_id) -> None:
    """After test judgments are stored: in a study with a train range each item may earn another vote
    (judgments.stopping; its row is locked by this transaction); a study that trains announces itself once
    the transaction commits."""
    n = sum(1 for judgment in judgments if judgment.kind == Trial.Kind.TEST)
    if not n:
        return
    if stopping_on(config):
        for item_id in sorted({j.item_id for j in judgments if j.kind == Trial.Kind.TEST}):  # as locked
            item_vote_after_answer(item_id=item_id, study_id=study_id, config=config)
    if config["training"]["every"] is not None:  # studies that do not train skip the receivers' reads
        transaction.on_commit(lambda: judgment_accepted.send(sender=Judgment, study_id=study_id, n=n))


def _store_together(*, token: str, answers: list[dict], now) -> list[BatchOutcome]:
    """Answers of one assignment (answer_input's dicts) in one transaction: one read of their trials (the
    assignment's row locked), each answer checked and built on its own (a refused one is reported and the
    rest go on), then every new judgment in one write (judgments.sql.store_answers). Raises a 404 for an
    unknown token; an IntegrityError when a concurrent request stored one of them first."""
    outcomes = [BatchOutcome(v["trial"]) for v in answers]
    built, row, config, keys = [], None, None, set()
    with transaction.atomic():
        rows = sql.answer_rows(token, [v["trial"] for v in answers])
        if not rows and not Assignment.objects.filter(token=token).exists():
            raise ApplicationError("assignment not found", status_code=404)
        for outcome, v in zip(outcomes, answers, strict=True):
            durations, display = v.get("durations") or {}, v.get("display") or {}
            try:
                _check_sizes(
                    token=token,
                    trial_id=v["trial"],
                    idempotency_key=v["idempotency_key"],
                    durations=durations,
                    display=display,
                )
                found = rows.get(v["trial"])
                outcome.result = _check_answerable(
                    found, token=token, idempotency_key=v["idempotency_key"], now=now
                )
                if outcome.result is not None:
                    continue
                if v["idempotency_key"] in keys:  # the batch's own answer under this key is stored first
                    raise _key_used()
                if config is None:
                    row, config = found, collection_config(found.study_kind, found.study_config)
                judgment = judgment_build(
                    found,
                    config,
                    now=now,
                    response=v["response"],
                    rt_ms=v["rt_ms"],
                    idempotency_key=v["idempotency_key"],
                    client_shown_at=v.get("client_shown_at"),
                    client_answered_at=v.get("client_answered_at"),
                    durations=durations,
                    display=display,
                )
            except ApplicationError as exc:
                outcome.error = exc
            else:
                built.append(judgment)
                keys.add(v["idempotency_key"])
                outcome.result = SubmitResult(judgment, True, row.n_answered + len(built), row.n_trials)
        for outcome in outcomes:  # a replay reports the count after the batch, as it would after it
            if outcome.result is not None and not outcome.result.created and built:
                outcome.result.n_answered = row.n_answered + len(built)
        if built:
            ttl = config["lease_ttl_s"]
            sql.store_answers(built, row, now + timedelta(seconds=ttl), now + timedelta(seconds=ttl / 2))
            _announce_and_vote(built, config, study_id=row.study_id)
    return outcomes


def judgment_submit(
    *,
    token: str,
    trial_id: str,
    response: str,
    rt_ms,
    idempotency_key: str,
    client_shown_at=None,
    client_answered_at=None,
    durations: dict | None = None,
    display: dict | None = None,
) -> SubmitResult:
    """Store one answered trial. Idempotent: the same key returns the stored judgment (created=False);
    a second answer to an answered trial is refused. Acknowledged only after the transaction commits.

    A batch of one (judgments_submit_batch): one statement finds the trial, its item, any stored answer and
    the study, and locks the assignment's row, then the test item (judgments.sql.answer_sql), so answers to
    one assignment are serialised and answers to others wait only on a shared item. The unique constraints
    (one judgment per trial; one per assignment and key) are the final word: an insert they refuse is
    resolved as a replay or a conflict."""
    return answer_submit(
        token=token,
        answer={
            "trial": trial_id,
            "response": response,
            "rt_ms": rt_ms,
            "idempotency_key": idempotency_key,
            "client_shown_at": client_shown_at,
            "client_answered_at": client_answered_at,
            "durations": durations,
            "display": display,
        },
    )


def answer_submit(*, token: str, answer: dict) -> SubmitResult:
    """Store one answer (answer_input's dict) as a batch of one; raises its refusal: what the single answer
    endpoint stores."""
    (outcome,) = judgments_submit_batch(token=token, answers=[answer])
    if outcome.error is not None:
        raise outcome.error
    return outcome.result


# --- several answers in one request ---------------------------------------------------------------------
BATCH_MAX = 20  # answers per batch: about a minute of a fast annotator's work
BATCH_MAX_BYTES = 128 * 1024  # BATCH_MAX answers of a few kB each (durations and display are capped)


def batch_input(data) -> list[dict]:
    """A batch body, {"answers": [answer, ...]}: 1-BATCH_MAX answers, each checked as answer_input checks
    one, no trial twice. A 400 naming the answer otherwise, before anything is stored."""
    answers = data.get("answers") if isinstance(data, dict) else None
    if not isinstance(answers, list) or not 1 <= len(answers) <= BATCH_MAX:
        raise ApplicationError(
            f'send {{"answers": [...]}}: a list of 1-{BATCH_MAX} answers', {"field": "answers"}
        )
    out = []
    for k, answer in enumerate(answers):
        try:
            out.append(answer_input(answer))
        except ApplicationError as exc:
            raise ApplicationError(f"answers[{k}]: {exc.message}", {**exc.extra, "index": k}) from exc
    if len({v["trial"] for v in out}) != len(out):
        raise ApplicationError("a batch may hold each trial once", {"field": "answers"})
    return out


# the unique constraints a concurrent request storing the same answer runs into (judgments.models.Judgment:
# one judgment per HIT and key; the trial's one-to-one column, which PostgreSQL names <table>_trial_id_key)
ANSWER_UNIQUE = "judgment_unique_idempotency"


def _answer_conflict(exc: IntegrityError) -> bool:
    """Whether the write met another request's judgment for one of its trials or keys (PostgreSQL names the
    constraint; SQLite names the columns)."""
    diag = getattr(exc.__cause__, "diag", None)
    name = getattr(diag, "constraint_name", None)
    if name is not None:
        return name == ANSWER_UNIQUE or name.startswith(f"{Judgment._meta.db_table}_trial_id")
    text = str(exc)
    return "UNIQUE" in text and ("trial_id" in text or "idempotency_key" in text)


def judgments_submit_batch(*, token: str, answers: list[dict]) -> list[BatchOutcome]:
    """Store answers of one assignment (answer_input's dicts; batch_input's for a batch), each idempotent by
    its key, all acknowledged once their transaction commits. One refused answer (already answered, out
    of range, ...) is reported and the rest still go in; an unknown token refuses the whole batch (404).
    The batch is one transaction with one read and one write, so that answer n+1 costs less than the
    first (docs/benchmarks.md, "Where the answer path's CPU goes"). When a concurrent request (a client's
    retry) stored one of them first, each answer is tried again on its own: it replays or is refused."""
    now = timezone.now()
    try:
        return _store_together(token=token, answers=answers, now=now)
    except IntegrityError as exc:
        if not _answer_conflict(exc):  # a broken invariant (a CHECK, a foreign key) is not a replay
            raise
        if len(answers) > 1:
            return [judgments_submit_batch(token=token, answers=[v])[0] for v in answers]
    v = answers[0]
    try:
        result = _replay(token=token, trial_id=v["trial"], idempotency_key=v["idempotency_key"])
    except ApplicationError as exc:
        return [BatchOutcome(v["trial"], error=exc)]
    return [BatchOutcome(v["trial"], result=result)]
