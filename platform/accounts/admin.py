"""The admin's user list shows who is a researcher, and an admin can make users researchers."""

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin

from accounts.services import RESEARCHERS_GROUP, researchers_group

User = get_user_model()


class ResearcherUserAdmin(UserAdmin):
    list_display = (*UserAdmin.list_display, "is_researcher")
    actions = ["make_researchers"]

    @admin.display(boolean=True, description="researcher")
    def is_researcher(self, user) -> bool:
        return any(g.name == RESEARCHERS_GROUP for g in user.groups.all())

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("groups")

    @admin.action(description="Add the selected users to the researchers group")
    def make_researchers(self, request, queryset) -> None:
        group = researchers_group()
        for user in queryset:
            user.groups.add(group)
        self.message_user(request, f"{queryset.count()} user(s) are researchers now.", messages.SUCCESS)


if admin.site.is_registered(User):
    admin.site.unregister(User)
admin.site.register(User, ResearcherUserAdmin)
