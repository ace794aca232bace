from django.contrib import admin

from exports.models import Export


@admin.register(Export)
class ExportAdmin(admin.ModelAdmin):
    list_display = (
        "study",
        "version",
        "status",
        "include_excluded",
        "size_bytes",
        "created_at",
        "finished_at",
    )
    list_filter = ("status",)
    readonly_fields = (
        "study",
        "version",
        "status",
        "archive",
        "sha256",
        "size_bytes",
        "summary",
        "error",
        "attempts",
        "finished_at",
    )
