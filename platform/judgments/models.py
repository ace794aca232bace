"""Crowd workers, their assignments (HITs), the trials in each, and one Judgment row per answered trial."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models
from django.db.models import Q

from core.models import BaseModel
from studies.models import Item, Study

# What an annotator may press, by study kind (screen sides for 2AFC).
RESPONSES = {"2afc": ("left", "right"), "jnd": ("same", "different")}


class CrowdPlatform(models.TextChoices):
    """Where an annotator comes from (the crowd platform). Not to be confused with `platform/`, the Django
    source root, or "the platform", this product."""

    PROLIFIC = "prolific", "Prolific"
    MTURK = "mturk", "Amazon Mechanical Turk"
    ANONYMOUS = "anonymous", "Anonymous link"
    SIMULATED = "simulated", "Simulated crowd"


class Worker(BaseModel):
    """An annotator, known only by a salted hash of their platform id (PROLIFIC_PID, MTurk workerId, or an
    anonymous browser id). Raw platform ids are never stored or exported."""

    platform = models.CharField(max_length=16, choices=CrowdPlatform.choices)
    external_hash = models.CharField(max_length=64)
    is_simulated = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["platform", "external_hash"], name="worker_unique_identity")
        ]

    def __str__(self) -> str:
        return f"{self.platform}:{self.external_hash[:10]}"


def new_token() -> str:
    return secrets.token_urlsafe(24)


class Assignment(BaseModel):
    """One worker's HIT: practice, sentinel and test trials. started -> submitted | returned | expired |
    rejected. The lease (lease_expires_at) holds its unanswered test items; answers renew it, heartbeats
    only up to a bound after the last answer (judgments.assignments)."""

    class Status(models.TextChoices):
        STARTED = "started", "started"
        SUBMITTED = "submitted", "submitted"
        RETURNED = "returned", "returned"
        EXPIRED = "expired", "expired"
        REJECTED = "rejected", "rejected"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="assignments")
    worker = models.ForeignKey(Worker, on_delete=models.PROTECT, related_name="assignments")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.STARTED, db_index=True)
    token = models.CharField(max_length=64, unique=True, default=new_token, editable=False)
    lease_expires_at = models.DateTimeField(db_index=True)
    platform = models.CharField(max_length=16, choices=CrowdPlatform.choices)
    # Crowd-platform context: Prolific STUDY_ID/SESSION_ID, MTurk hitId/assignmentId/turkSubmitTo
    # (never worker ids).
    platform_info = models.JSONField(default=dict, blank=True)
    n_trials = models.PositiveIntegerField(default=0)
    n_answered = models.PositiveIntegerField(default=0)
    # Set by every answer: heartbeats extend the lease only up to lease_ttl_s after it (FIRST_LEASE_S after
    # the start while there is none), so a lease is kept by answering, not by heartbeats alone.
    last_answer_at = models.DateTimeField(null=True, blank=True)
    # Salted hash of the starting client's address (core.net.client_key): caps open assignments per client
    # and study. Never the raw address. Empty for assignments started without a request (tests, scripts).
    client_hash = models.CharField(max_length=64, blank=True, default="")
    submitted_at = models.DateTimeField(null=True, blank=True)
    completion_code = models.CharField(max_length=64, blank=True)
    # Quality control, applied when the assignment is submitted.
    excluded = models.BooleanField(default=False, db_index=True)
    qc = models.JSONField(default=dict, blank=True)
    # Tallies of the assignment's judgments (judgments.tallies), kept by the statement that stores each
    # answer: the dashboard's per-worker and study-wide counts sum these, one row per HIT, instead of
    # counting a study's judgments. Unindexed, so keeping them leaves the answer's update heap-only.
    n_tests = models.PositiveIntegerField(default=0)
    n_sentinels = models.PositiveIntegerField(default=0)
    n_sentinels_right = models.PositiveIntegerField(default=0)
    n_first_key = models.PositiveIntegerField(default=0)  # practice aside: answers with RESPONSES[kind][0]
    n_flagged = models.PositiveIntegerField(default=0)  # timing-flagged, any kind

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["study", "worker"],
                condition=Q(status="started"),
                name="assignment_one_active_per_worker",
            ),
        ]
        indexes = [
            models.Index(fields=["study", "status", "lease_expires_at"], name="assignment_lease_idx"),
            models.Index(
                fields=["study", "client_hash"],
                condition=Q(status="started"),
                name="assignment_open_client_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.study_id}/{self.worker_id} ({self.status})"


class Trial(BaseModel):
    """One position in an assignment. `swap` is the server's left/right draw: False shows p0 on the left
    (JND: p0 first). `public_id` is what the annotator sees; it reveals nothing about the item."""

    class Kind(models.TextChoices):
        PRACTICE = "practice", "practice"
        SENTINEL = "sentinel", "sentinel"
        TEST = "test", "test"

    assignment = models.ForeignKey(Assignment, on_delete=models.CASCADE, related_name="trials")
    worker = models.ForeignKey(Worker, on_delete=models.PROTECT, related_name="+")
    item = models.ForeignKey(Item, on_delete=models.PROTECT, related_name="trials")
    position = models.PositiveIntegerField()
    kind = models.CharField(max_length=16, choices=Kind.choices)
    swap = models.BooleanField()
    public_id = models.CharField(max_length=32, unique=True, default=new_token, editable=False)
    answered = models.BooleanField(default=False)

    class Meta:
        ordering = ["assignment", "position"]
        constraints = [
            models.UniqueConstraint(fields=["assignment", "position"], name="trial_unique_position"),
            models.UniqueConstraint(fields=["assignment", "item"], name="trial_unique_item_per_assignment"),
            # A worker never gets the same test item twice, in any assignment.
            models.UniqueConstraint(
                fields=["worker", "item"], condition=Q(kind="test"), name="trial_unique_test_item_per_worker"
            ),
        ]
        # No index holds `answered`: marking a trial answered is then a heap-only (HOT) update. Lease
        # counts live on Item.n_open; trials are found by assignment, worker or public id.


class Judgment(BaseModel):
    """One answered trial. `choice` is in item terms (2AFC: 0 = p0 closer, 1 = p1 closer; JND: 1 = same,
    0 = different); `response` is what was pressed (left/right, same/different) and `presented_left` which
    patch was on the left (JND: shown first). Created once per trial; retries with the same idempotency key
    return the stored row."""

    trial = models.OneToOneField(Trial, on_delete=models.PROTECT, related_name="judgment")
    assignment = models.ForeignKey(Assignment, on_delete=models.PROTECT, related_name="judgments")
    item = models.ForeignKey(Item, on_delete=models.PROTECT, related_name="judgments")
    worker = models.ForeignKey(Worker, on_delete=models.PROTECT, related_name="judgments")
    kind = models.CharField(max_length=16, choices=Trial.Kind.choices)
    idempotency_key = models.CharField(max_length=64)
    response = models.CharField(max_length=16)
    choice = models.PositiveSmallIntegerField()
    presented_left = models.CharField(max_length=2)
    correct = models.BooleanField(null=True)  # sentinels and practice only
    rt_ms = models.FloatField()
    client_shown_at = models.FloatField(null=True, blank=True)  # client epoch ms
    client_answered_at = models.FloatField(null=True, blank=True)
    durations = models.JSONField(default=dict, blank=True)  # JND: measured on-screen ms per phase
    timing_flagged = models.BooleanField(default=False)
    display = models.JSONField(default=dict, blank=True)  # viewport, devicePixelRatio, refresh rate, ...

    class Meta:
        ordering = ["created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["assignment", "idempotency_key"], name="judgment_unique_idempotency"
            ),
        ]
        indexes = [models.Index(fields=["item", "kind"], name="judgment_item_kind_idx")]


class WorkerReview(BaseModel):
    """A researcher's decision on one worker in one study. A rejection rejects every assignment of the worker
    there (judgments.qc.assignment_reject: leases released, counts taken back, out of exports and training)
    and keeps the worker from starting new HITs in the study; it is final (a rejected worker cannot be
    approved)."""

    class Decision(models.TextChoices):
        APPROVED = "approved", "approved"
        REJECTED = "rejected", "rejected"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="worker_reviews")
    worker = models.ForeignKey(Worker, on_delete=models.PROTECT, related_name="reviews")
    decision = models.CharField(max_length=16, choices=Decision.choices)
    reason = models.CharField(max_length=500, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["study", "worker"], name="workerreview_unique_study_worker")
        ]

    def __str__(self) -> str:
        return f"{self.study_id}/{self.worker_id}: {self.decision}"
