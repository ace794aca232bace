from django.contrib import admin

from studies.models import Item, Study


@admin.register(Study)
class StudyAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "status", "owner", "is_demo", "created_at")
    list_filter = ("kind", "status", "is_demo")
    search_fields = ("name",)


@admin.register(Item)
class ItemAdmin(admin.ModelAdmin):
    list_display = ("study", "index", "split", "category", "role", "expected")
    list_filter = ("split", "category", "role")
    raw_id_fields = ("study",)
