"""Versioned, immutable dataset exports of a study."""

from django.conf import settings
from django.db import models

from core.models import BaseModel
from studies.models import Study


class Export(BaseModel):
    """One archive: the BAPPS layout plus a manifest of raw judgments. Written once by a Celery job, never
    changed afterwards; `sha256` is the archive's digest."""

    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        RUNNING = "running", "running"
        DONE = "done", "done"
        FAILED = "failed", "failed"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="exports")
    version = models.PositiveIntegerField()
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    include_excluded = models.BooleanField(default=False)
    # judgments' browser user agents (left out unless the researcher asks: judgments.privacy)
    include_user_agent = models.BooleanField(default=False)
    archive = models.CharField(max_length=300, blank=True)  # media-relative path of the .zip
    sha256 = models.CharField(max_length=64, blank=True)
    size_bytes = models.BigIntegerField(default=0)
    summary = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # starts of the build job not ended by an error it caught, i.e. tries a killed worker left behind (the
    # job is redelivered): capped by PERCEPTLAB_EXPORT_MAX_ATTEMPTS (exports.services.export_build)
    attempts = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["study", "version"], name="export_unique_version")]

    def __str__(self) -> str:
        return f"{self.study_id} v{self.version} ({self.status})"
