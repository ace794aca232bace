"""Studies and their stimuli. Images live in media storage under content-addressed names."""

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from core.models import BaseModel
from studies.collection import collection_config


class Study(BaseModel):
    class Kind(models.TextChoices):
        TWO_AFC = "2afc", "2AFC"
        JND = "jnd", "JND"

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        BUILDING = "building", "Building stimuli"
        ACTIVE = "active", "Active"
        PAUSED = "paused", "Paused"
        # final: no new assignments ever and no restart; started HITs may still be finished and submitted
        CLOSED = "closed", "Closed"
        FAILED = "failed", "Build failed"

    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=8, choices=Kind.choices)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="studies"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    is_demo = models.BooleanField(default=False)
    # The distortion-engine config the stimuli were built from (JSON; see distortions.dataset).
    build_config = models.JSONField(default=dict, blank=True)
    # Collection settings (judgments per item by split, sentinel rate, HIT size, lease TTL, ...).
    config = models.JSONField(default=dict, blank=True)
    build_error = models.TextField(blank=True)
    # {"done": n, "total": m} while the stimulus build runs (read by the API and the dashboard).
    build_progress = models.JSONField(default=dict, blank=True)
    # Train items the study may serve when its train items are a candidate pool (config sampling.pool_factor
    # > 1 at the build): the engine's normal train count. Null: every item is served (no pool).
    train_budget = models.PositiveIntegerField(null=True, blank=True)

    @property
    def collection(self) -> dict:
        """The validated collection config (`config`) with defaults merged (studies.collection): what a
        HIT, a lease, QC and training read."""
        return collection_config(self.kind, self.config)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "studies"

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"


class Item(BaseModel):
    """One 2AFC triplet or JND pair. Image fields are media-relative, content-addressed paths."""

    class Split(models.TextChoices):
        TRAIN = "train", "train"
        VAL = "val", "val"

    class Role(models.TextChoices):
        TEST = "test", "test"
        SENTINEL = "sentinel", "sentinel"
        PRACTICE = "practice", "practice"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="items")
    index = models.PositiveIntegerField()
    split = models.CharField(max_length=8, choices=Split.choices, default=Split.TRAIN)
    category = models.CharField(max_length=64, default="traditional")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.TEST)
    ref_image = models.CharField(max_length=200)
    p0_image = models.CharField(max_length=200)
    p1_image = models.CharField(max_length=200, blank=True)
    # Known answer for sentinels: 2AFC "p0"/"p1"; JND "same"/"different". Empty for test items.
    expected = models.CharField(max_length=16, blank=True)
    records = models.JSONField(default=dict, blank=True)
    # Accepted judgments (denormalised; excluded assignments' judgments are taken back out).
    n_judgments = models.PositiveIntegerField(default=0)
    # Open leases: unanswered test trials of started assignments (denormalised, kept by the assignment
    # engine under the item's row lock). Load = n_judgments + n_open decides who gets the item next.
    n_open = models.PositiveIntegerField(default=0)
    # Adaptive collection (docs/adaptive.md). The engine serves only active items; a pool's candidates wait
    # inactive until the sampler releases them (judgments.pool), each with the probability it was drawn
    # with (propensity, for reweighted estimates) and the sampler that drew it ("disagreement@1").
    active = models.BooleanField(default=True)
    propensity = models.FloatField(null=True, blank=True)
    sampler_version = models.CharField(max_length=32, blank=True)
    score = models.FloatField(null=True, blank=True)  # the sampler's latest score (training.rescoring)
    # The item's place in the study's draw order (1, 2, ... across all releases): the Des Raj estimator
    # (docs/sampling.md) reads the propensities in this order. Null for an item no pool drew.
    draw = models.PositiveIntegerField(null=True, blank=True)
    # Judgments the item is due now: the split's count, or a range's min raised one at a time by Bayesian
    # stopping (judgments.stopping). The engine offers an item while n_judgments + n_open < n_target.
    # Set by studies.targets.item_targets_sync wherever items are created.
    n_target = models.PositiveIntegerField(default=1)
    n_ones = models.PositiveIntegerField(default=0)  # accepted judgments with choice 1 (p1 / "same")

    class Meta:
        ordering = ["study", "index"]
        constraints = [models.UniqueConstraint(fields=["study", "index"], name="item_unique_study_index")]
        indexes = [
            # the assignment engine's queue: a study's test items still below their target, least loaded
            # first. Full items leave the index: at BAPPS scale, once the least-loaded level held mostly
            # full items (149k train items at their target of 2, beside 6k val items wanting 5), every start
            # walked past them, and the start's p99 grew to 0.6 s
            models.Index(
                F("study"),
                F("n_judgments") + F("n_open"),
                F("index"),
                condition=Q(role="test", active=True, n_target__gt=F("n_judgments") + F("n_open")),
                name="item_queue_idx",
            ),
            # the dashboard's coverage and sampler counts (judgments.selectors.study_stats, sampling_panel)
            # read these columns of a study's items only: on PostgreSQL an index-only scan, where a scan of
            # the items themselves (wide: their records) took 0.4 s at 187k items
            models.Index(
                fields=["study", "role", "split", "sampler_version"],
                include=["n_judgments", "n_target", "active"],
                name="item_tally_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.study_id}#{self.index}"


class SourcePhotoSet(BaseModel):
    """A researcher's own photographs for building studies (studies.sources). The photos are stored privately
    (sources/<set id>/<sha256>.<png|jpg> in the media storage, never served); `files` lists them with their
    sizes."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="source_sets")
    name = models.CharField(max_length=200)
    # [{"file": "<sha256>.png", "name": "<member name in the upload>", "width": w, "height": h, "bytes": n}]
    files = models.JSONField(default=list, blank=True)
    n_images = models.PositiveIntegerField(default=0)
    min_side = models.PositiveIntegerField(default=0)  # the smallest side of any photo, pixels
    total_bytes = models.PositiveBigIntegerField(default=0)
    digest = models.CharField(max_length=64)  # sha256 over the sorted file hashes: the set's content

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.n_images} photos)"


class BackgroundJob(BaseModel):
    """A long background job's state and progress, by name (e.g. "cnn_pool": the demo's CNN pool), so the
    home page and the dashboard can show it and a restart can tell a finished job from an unfinished one."""

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    name = models.CharField(max_length=64, unique=True)
    state = models.CharField(max_length=8, choices=State.choices, default=State.QUEUED)
    done = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    step_started_at = models.DateTimeField(null=True, blank=True)  # when the current step (model) began
    finished_at = models.DateTimeField(null=True, blank=True)
    message = models.TextField(blank=True)
    result = models.JSONField(default=dict, blank=True)

    def __str__(self) -> str:
        return f"{self.name}: {self.state} {self.done}/{self.total}"
