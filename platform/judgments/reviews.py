"""A researcher's decision on a worker in a study: approve, or reject with a reason. A rejection rejects every
assignment of the worker in the study (judgments.qc.assignment_reject: live leases released, accepted counts
taken back, the judgments flagged excluded, so they leave exports and training) and keeps the worker from
starting new HITs there (judgments.assignments.assignment_start)."""

from __future__ import annotations

import logging
import re

from django.db import transaction
from django.utils import timezone

from core.exceptions import ApplicationError
from judgments.models import Assignment, Worker, WorkerReview
from judgments.qc import assignment_reject
from studies.models import Study

logger = logging.getLogger(__name__)

HASH_PREFIX = 16  # what judgments.selectors.worker_stats shows of a worker's salted hash
REASON_MAX = 500
DECISIONS = {"approve": WorkerReview.Decision.APPROVED, "reject": WorkerReview.Decision.REJECTED}
_HASH_RE = re.compile(rf"^[0-9a-f]{{{HASH_PREFIX}}}$")


def study_worker_get(*, study: Study, worker_hash: str) -> Worker:
    """The worker of this study named by the 16-character hash prefix worker_stats shows; 404 otherwise
    (a malformed prefix, or nobody of that prefix worked on the study)."""
    worker_hash = str(worker_hash or "").lower()
    if not _HASH_RE.match(worker_hash):
        raise ApplicationError(
            f"a worker is named by the first {HASH_PREFIX} hex characters of its hash",
            {"field": "worker"},
            status_code=404,
        )
    workers = list(
        Worker.objects.filter(external_hash__startswith=worker_hash, assignments__study=study).distinct()[:2]
    )
    if not workers:
        raise ApplicationError("no worker with this hash worked on this study", {"field": "worker"}, 404)
    if len(workers) > 1:  # 64 bits of a salted hash: practically never
        raise ApplicationError("two workers share this hash prefix", {"field": "worker"}, 409)
    return workers[0]


def worker_is_rejected(*, study: Study, worker: Worker) -> bool:
    return WorkerReview.objects.filter(
        study=study, worker=worker, decision=WorkerReview.Decision.REJECTED
    ).exists()


def worker_review_set(
    *, study: Study, worker_hash: str, decision: str, reason: str = "", user
) -> WorkerReview:
    """Approve or reject (with a reason of at most 500 characters) the worker named by `worker_hash` in
    `study`. Rejecting again is harmless (it keeps the first decision and its reason, and rejects any
    assignment started since); a rejected worker cannot be approved (409)."""
    wanted = DECISIONS.get(decision) or (decision if decision in WorkerReview.Decision.values else None)
    if wanted is None:
        raise ApplicationError(
            "decision must be approve or reject", {"field": "decision", "valid": list(DECISIONS)}
        )
    reason = str(reason or "").strip()
    if len(reason) > REASON_MAX:
        raise ApplicationError(f"the reason is longer than {REASON_MAX} characters", {"field": "reason"})
    if wanted == WorkerReview.Decision.REJECTED and not reason:
        raise ApplicationError(
            "a rejection needs a reason (the worker's platform shows it)", {"field": "reason"}
        )
    worker = study_worker_get(study=study, worker_hash=worker_hash)
    with transaction.atomic():
        review = WorkerReview.objects.select_for_update().filter(study=study, worker=worker).first()
        if (
            wanted == WorkerReview.Decision.APPROVED
            and review
            and review.decision == WorkerReview.Decision.REJECTED
        ):
            raise ApplicationError(
                "this worker was rejected; a rejection is final and cannot be turned into an approval",
                {"field": "decision", "code": "rejected"},
                status_code=409,
            )
        if review is None:
            review = WorkerReview(study=study, worker=worker)
        if review.decision != WorkerReview.Decision.REJECTED:  # a second rejection keeps the first's reason
            review.decision = wanted
            review.reason = reason
            review.decided_by = user if getattr(user, "is_authenticated", False) else None
            review.decided_at = timezone.now()
            review.save()
        reason = review.reason
        if wanted == WorkerReview.Decision.REJECTED:
            for assignment in Assignment.objects.filter(study=study, worker=worker).exclude(
                status=Assignment.Status.REJECTED
            ):
                assignment_reject(
                    assignment=assignment, reason=f"worker rejected by the researcher: {reason}"
                )
    logger.info("study %s: worker %s %s", study.pk, worker.external_hash[:HASH_PREFIX], review.decision)
    return review
