from django import forms
from django.contrib import admin

from core.exceptions import ApplicationError
from studies.collection import collection_config
from studies.models import BackgroundJob, Item, SourcePhotoSet, Study


class StudyAdminForm(forms.ModelForm):
    """Collection settings edited here are checked as the API checks them (completion URL included)."""

    class Meta:
        model = Study
        fields = "__all__"  # noqa: DJ007

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("kind") and "config" in cleaned:
            try:
                collection_config(cleaned["kind"], cleaned["config"], saving=True)
            except ApplicationError as exc:
                self.add_error("config", exc.message)
        return cleaned


@admin.register(Study)
class StudyAdmin(admin.ModelAdmin):
    form = StudyAdminForm
    list_display = ("name", "kind", "status", "owner", "is_demo", "created_at")
    list_filter = ("kind", "status", "is_demo")
    search_fields = ("name",)


@admin.register(Item)
class ItemAdmin(admin.ModelAdmin):
    list_display = ("study", "index", "split", "category", "role", "expected", "n_judgments", "n_open")
    list_filter = ("split", "category", "role")
    raw_id_fields = ("study",)
    # counters the assignment engine keeps under row locks; hand edits would over- or under-assign
    readonly_fields = (
        "n_judgments",
        "n_open",
        "n_target",
        "n_ones",
        "active",
        "propensity",
        "sampler_version",
    )


@admin.register(SourcePhotoSet)
class SourcePhotoSetAdmin(admin.ModelAdmin):
    list_display = ("name", "owner", "n_images", "min_side", "total_bytes", "created_at")
    search_fields = ("name",)
    raw_id_fields = ("owner",)
    # the stored files are named by these: edit them and the set no longer resolves
    readonly_fields = ("files", "n_images", "min_side", "total_bytes", "digest")


@admin.register(BackgroundJob)
class BackgroundJobAdmin(admin.ModelAdmin):
    list_display = ("name", "state", "done", "total", "started_at", "finished_at")
    readonly_fields = ("created_at", "updated_at")
