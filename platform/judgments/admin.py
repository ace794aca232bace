from django.contrib import admin, messages

from judgments.models import Assignment, Judgment, Trial, Worker, WorkerReview
from judgments.qc import assignment_reject


@admin.register(Worker)
class WorkerAdmin(admin.ModelAdmin):
    list_display = ("short_hash", "platform", "is_simulated", "created_at")
    list_filter = ("platform", "is_simulated")
    search_fields = ("external_hash",)
    readonly_fields = ("platform", "external_hash", "is_simulated")

    @admin.display(description="worker (hash)")
    def short_hash(self, obj):
        return obj.external_hash[:16]


class TrialInline(admin.TabularInline):
    model = Trial
    fields = ("position", "kind", "item", "swap", "answered")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False


@admin.register(Assignment)
class AssignmentAdmin(admin.ModelAdmin):
    list_display = ("id", "study", "platform", "status", "n_answered", "n_trials", "excluded", "created_at")
    list_filter = ("status", "platform", "excluded", "study")
    # status changes go through the services (the reject action), which keep the items' counters right
    readonly_fields = (
        "token",
        "worker",
        "study",
        "status",
        "lease_expires_at",
        "excluded",
        "submitted_at",
        "n_trials",
        "n_answered",
        "qc",
        "platform_info",
        "completion_code",
        "last_answer_at",
        "client_hash",
    )
    inlines = [TrialInline]
    actions = ["reject"]

    @admin.action(description="Reject (keep the data, flag it, reopen its items)")
    def reject(self, request, queryset):
        for assignment in queryset:
            assignment_reject(assignment=assignment, reason=f"rejected by {request.user}")
        messages.success(request, f"{queryset.count()} assignment(s) rejected")


@admin.register(Judgment)
class JudgmentAdmin(admin.ModelAdmin):
    list_display = (
        "created_at",
        "item",
        "kind",
        "response",
        "choice",
        "presented_left",
        "correct",
        "rt_ms",
        "timing_flagged",
    )
    list_filter = ("kind", "timing_flagged", "correct")
    raw_id_fields = ("trial", "assignment", "item", "worker")

    def has_change_permission(self, request, obj=None):
        return False  # judgments are a record of what annotators did: read-only


@admin.register(Trial)
class TrialAdmin(admin.ModelAdmin):
    list_display = ("assignment", "position", "kind", "item", "swap", "answered")
    list_filter = ("kind", "answered")
    raw_id_fields = ("assignment", "worker", "item")


@admin.register(WorkerReview)
class WorkerReviewAdmin(admin.ModelAdmin):
    """Read-only: decisions go through judgments.reviews (the dashboard or the API), which rejects the
    worker's HITs and keeps the counts right."""

    list_display = ("study", "worker", "decision", "reason", "decided_by", "decided_at")
    list_filter = ("decision", "study")
    readonly_fields = ("study", "worker", "decision", "reason", "decided_by", "decided_at")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
