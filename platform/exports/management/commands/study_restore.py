"""Rebuild a study from an export archive (its restore/ section) in this database."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from core.exceptions import ApplicationError
from exports.restore import study_restore


class Command(BaseCommand):
    help = "Restore a study (items, images, workers, assignments, trials, judgments) from an export zip."

    def add_arguments(self, parser):
        parser.add_argument("archive", help="an export zip written by this platform")
        parser.add_argument("--owner", help="username of the researcher who will own the copy")

    def handle(self, *args, archive, owner, **options):
        user = None
        if owner:
            user = get_user_model().objects.filter(username=owner).first()
            if user is None:
                raise CommandError(f"no user {owner!r}")
        try:
            with open(archive, "rb") as handle:
                study = study_restore(archive=handle, owner=user)
        except (ApplicationError, OSError) as exc:
            raise CommandError(f"{archive}: {getattr(exc, 'message', exc)}") from exc
        self.stdout.write(f"restored study {study.pk} ({study.name}, {study.items.count()} items)")
