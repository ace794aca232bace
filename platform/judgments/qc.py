"""Quality control and completion: finishing a HIT (QC against the study's exclusion rule), what the
annotator's page does afterwards (completion code, Prolific redirect, MTurk form), and a researcher's
rejection."""

from __future__ import annotations

import logging

from django.db import connection, transaction
from django.utils import timezone

from core.exceptions import ApplicationError
from judgments import sql
from judgments.assignments import locked_assignment, release_leases, require_live
from judgments.models import RESPONSES, Assignment, CrowdPlatform, Judgment, Trial
from judgments.stopping import item_targets_after_take_back
from judgments.workers import mturk_submit_host_ok
from studies.collection import completion_redirect
from studies.models import Item

logger = logging.getLogger(__name__)
POSITION = connection.ops.quote_name("position")


def qc_evaluate(*, assignment: Assignment, rule: dict) -> dict:
    """Sentinel accuracy, side bias and median RT of one assignment, and whether the rule excludes it."""
    rows = [
        {"kind": kind, "correct": correct, "response": response, "rt_ms": rt_ms}
        for kind, correct, response, rt_ms in sql.execute(
            f"SELECT kind, correct, response, rt_ms FROM {Judgment._meta.db_table} "
            f"WHERE assignment_id = %s AND kind <> %s ORDER BY created_at",
            [sql.prep(Judgment, "assignment_id", assignment.pk), Trial.Kind.PRACTICE.value],
        )
    ]
    return qc_summary(rows=rows, kind=assignment.study.kind, rule=rule)


def qc_summary(*, rows: list[dict], kind: str, rule: dict) -> dict:
    """qc_evaluate over given rows (kind, correct, response, rt_ms of the non-practice judgments), so that
    a writer that holds them (crowdsim.scale's bulk path) applies the same rule without reading them back."""
    sentinels = [r for r in rows if r["kind"] == Trial.Kind.SENTINEL]
    n_correct = sum(1 for r in sentinels if r["correct"])
    accuracy = n_correct / len(sentinels) if sentinels else None
    first = RESPONSES[kind][0]
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
    return {
        "sentinels": len(sentinels),
        "sentinels_correct": n_correct,
        "sentinel_accuracy": accuracy,
        f"fraction_{first}": side,
        "median_rt_ms": median_rt,
        "rule": rule,
        "excluded": bool(reasons),
        "reasons": reasons,
    }


def _take_back_counts(assignment: Assignment) -> None:
    """An excluded or rejected assignment's test judgments stop counting: each item's accepted count, and
    its count of choice-1 votes (Bayesian stopping reads both), go down by its judgment; a target that a
    taken-back vote raised goes back down (judgments.stopping.item_targets_after_take_back)."""
    rows = sql.execute(
        f"SELECT item_id, choice FROM {Judgment._meta.db_table} WHERE assignment_id = %s AND kind = %s",
        [sql.prep(Judgment, "assignment_id", assignment.pk), Trial.Kind.TEST.value],
    )
    items = sorted(sql.loaded(Item, "id", item_id) for item_id, _ in rows)
    ones = sorted(sql.loaded(Item, "id", item_id) for item_id, choice in rows if choice == 1)
    sql.items_lock(items)  # in id order, as every writer of several items takes them
    sql.items_count_down(item_ids=items, column="n_judgments")
    sql.items_count_down(item_ids=ones, column="n_ones")
    item_targets_after_take_back(item_ids=items, config=assignment.study.collection)


def completion_for(assignment: Assignment) -> dict:
    """What the annotator's page does after the server holds every trial. Never raises on what is stored: a
    completion URL that fails today's rule (studies.collection.completion_url_problem), or an MTurk
    turkSubmitTo that is not an MTurk host, leaves the redirect or form out, and the page shows the code."""
    code = assignment.completion_code
    out = {"code": code, "platform": assignment.platform}
    info = assignment.platform_info if isinstance(assignment.platform_info, dict) else {}
    if assignment.platform == CrowdPlatform.PROLIFIC:
        redirect = completion_redirect(assignment.study.config, code)
        if redirect is None:
            logger.warning(
                "study %s: stored prolific_completion_url fails validation; no redirect", assignment.study_id
            )
        else:
            out["redirect_url"] = redirect
    elif (
        assignment.platform == CrowdPlatform.MTURK
        and info.get("assignment_id")
        and mturk_submit_host_ok(info.get("turk_submit_to"))
    ):
        out["mturk_form"] = {
            "action": str(info["turk_submit_to"]).rstrip("/") + "/mturk/externalSubmit",
            "fields": {"assignmentId": info["assignment_id"], "completion_code": code},
        }
    return out


def assignment_submit(*, token: str) -> Assignment:
    """Finish an assignment once every trial is stored; apply the study's exclusion rule. Idempotent."""
    with transaction.atomic():
        assignment = locked_assignment(token)
        if assignment.status == Assignment.Status.SUBMITTED:
            return assignment
        require_live(assignment, timezone.now())
        missing = [
            position
            for (position,) in sql.execute(
                f"SELECT {POSITION} FROM {Trial._meta.db_table} WHERE assignment_id = %s AND answered = %s "
                f"ORDER BY {POSITION} LIMIT 20",
                [sql.prep(Trial, "assignment_id", assignment.pk), False],
            )
        ]
        if missing:
            raise ApplicationError(
                f"{assignment.n_trials - assignment.n_answered} trials are not stored yet",
                {"code": "incomplete", "missing_positions": missing},
                status_code=409,
            )
        study = assignment.study
        config = study.collection
        qc = qc_evaluate(assignment=assignment, rule=config["exclusion"])
        assignment.status = Assignment.Status.SUBMITTED
        assignment.submitted_at = assignment.updated_at = timezone.now()
        assignment.completion_code = config["completion_code"] or ""
        assignment.excluded = qc["excluded"]
        assignment.qc = qc
        # what save(update_fields=...) writes, as one hand-written UPDATE (no signal listens)
        sql.update_fields(
            assignment, ["status", "submitted_at", "completion_code", "excluded", "qc", "updated_at"]
        )
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
            release_leases([assignment.pk])
        if not assignment.excluded:
            _take_back_counts(assignment)
        assignment.status = Assignment.Status.REJECTED
        assignment.excluded = True
        assignment.qc = {
            **assignment.qc,
            "excluded": True,
            "reasons": [*assignment.qc.get("reasons", []), reason],
        }
        assignment.save(update_fields=["status", "excluded", "qc", "updated_at"])
    return assignment
