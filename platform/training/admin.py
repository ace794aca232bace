from django.contrib import admin

from training.models import Evaluation, ModelVersion, TrainingState


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = (
        "study",
        "backbone",
        "weights",
        "variant",
        "version",
        "status",
        "n_train_judgments",
        "created_at",
    )
    list_filter = ("status", "backbone", "weights", "variant")
    readonly_fields = ("backbone_info", "trunk_path", "trunk_sha256", "heads_path", "heads_sha256")


@admin.register(Evaluation)
class EvaluationAdmin(admin.ModelAdmin):
    list_display = (
        "study",
        "metric",
        "measure",
        "split",
        "category",
        "score",
        "ci_low",
        "ci_high",
        "n_items",
        "created_at",
    )
    list_filter = ("measure", "split", "metric")


@admin.register(TrainingState)
class TrainingStateAdmin(admin.ModelAdmin):
    list_display = ("study", "queued", "running_since", "last_judgments", "runs", "last_run_at")
