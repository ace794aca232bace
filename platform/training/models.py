"""Trained metric heads and their evaluations against the humans of a study."""

from django.db import models

from core.models import BaseModel
from studies.models import Study


class ModelVersion(BaseModel):
    """One trained set of LPIPS heads (lpips file format) for a study and backbone. Only a `ready` version
    is ever shown as current; a crashed or killed job leaves a `failed` or `running` row, never a partial
    model in place of the current one."""

    class Status(models.TextChoices):
        RUNNING = "running", "running"
        READY = "ready", "ready"
        FAILED = "failed", "failed"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="model_versions")
    backbone = models.CharField(max_length=32)  # e.g. "alex"
    weights = models.CharField(max_length=32)  # the weight source that ran: imagenet / kmeans / random
    variant = models.CharField(max_length=16, default="lin")  # lin / tune / scratch
    version = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    heads_path = models.CharField(max_length=300, blank=True)  # media-relative .pth in the lpips format
    heads_sha256 = models.CharField(max_length=64, blank=True)
    # The trunk's features state dict, shipped when it is not torchvision's ImageNet one (kmeans, random,
    # tune, scratch): media-relative, shared by the versions that ran the same trunk.
    trunk_path = models.CharField(max_length=300, blank=True)
    trunk_sha256 = models.CharField(max_length=64, blank=True)
    # Which backbone ran and why: requested, used, reason (words), source (metric's backbone source
    # string) and, for a k-means trunk, its corpus (seed, patches, digest, split, items).
    backbone_info = models.JSONField(default=dict, blank=True)
    n_train_judgments = models.PositiveIntegerField(default=0)
    n_train_items = models.PositiveIntegerField(default=0)
    train_info = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["study", "backbone", "weights", "variant", "version"],
                name="modelversion_unique_version",
            )
        ]

    def __str__(self) -> str:
        return f"{self.backbone}-{self.weights}-{self.variant} v{self.version}"


class Evaluation(BaseModel):
    """A metric's agreement with the humans of a study on one split and category (2AFC score or JND mAP),
    with a bootstrap confidence interval. `model_version` is set for trained heads, empty for baselines."""

    class Kind(models.TextChoices):
        HUMAN = "human", "human ceiling"
        BASELINE = "baseline", "baseline on images (l2, ssim, ...)"
        OFFICIAL = "official", "official LPIPS heads"
        UNWEIGHTED = "unweighted", "backbone, unweighted"
        UNTRAINED = "untrained", "backbone, initial heads"
        TRAINED = "trained", "heads trained on this study"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="evaluations")
    model_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.CASCADE, related_name="evaluations"
    )
    run = models.UUIDField(db_index=True)  # evaluations computed together share a run id
    metric = models.CharField(
        max_length=64
    )  # "l2", "ssim", "lpips-alex v0.1 (official)", "trained alex-imagenet lin", "human"
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.BASELINE)  # what `metric` is
    measure = models.CharField(max_length=16)  # "2afc" / "jnd_map" / "ceiling"
    split = models.CharField(max_length=8)
    category = models.CharField(max_length=64)  # or "all"
    score = models.FloatField()
    ci_low = models.FloatField(null=True, blank=True)
    ci_high = models.FloatField(null=True, blank=True)
    n_items = models.PositiveIntegerField()
    n_judgments = models.PositiveIntegerField()

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["study", "measure", "created_at"], name="evaluation_study_idx")]


class TrainingState(models.Model):
    """Per study: the debounce counter and the one-job-at-a-time claim for retraining."""

    study = models.OneToOneField(
        Study, on_delete=models.CASCADE, primary_key=True, related_name="training_state"
    )
    queued = models.BooleanField(default=False)
    running_since = models.DateTimeField(null=True, blank=True)
    last_judgments = models.PositiveIntegerField(default=0)  # accepted judgments the current model saw
    last_run_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    runs = models.PositiveIntegerField(default=0)
    # Variants asked for on demand ("tune", "scratch"): trained once by the next job, then cleared.
    pending_variants = models.JSONField(default=list, blank=True)
    # The claim of the running job: its id and a heartbeat it refreshes while it runs. A claim whose
    # heartbeat is older than settings.PERCEPTLAB_TRAINING_STALE_S belongs to a dead worker: the next job
    # (the broker redelivers an unacknowledged one) takes it over. `queued_at`: when `queued` was set.
    claim = models.UUIDField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    queued_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"training state of {self.study_id}"
