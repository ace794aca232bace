"""Delete participant data a study no longer needs (judgments.retention)."""

from datetime import UTC, datetime, time

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from judgments.retention import participant_data_purge
from studies.models import Study


class Command(BaseCommand):
    help = (
        "For one study's rows created before --before: delete browser user agents; with --display the whole "
        "display profile, --client-times the client clock times (kept relative to each HIT), --session-ids "
        "the platform session ids of finished assignments."
    )

    def add_arguments(self, parser):
        parser.add_argument("study_id")
        parser.add_argument(
            "--before", required=True, help="a date (YYYY-MM-DD, UTC midnight) or an ISO datetime"
        )
        parser.add_argument("--display", action="store_true", help="delete the whole display profile too")
        parser.add_argument(
            "--client-times",
            action="store_true",
            help="replace client epoch times by ms since the HIT's first",
        )
        parser.add_argument(
            "--session-ids",
            action="store_true",
            help="delete Prolific/MTurk session ids of finished assignments",
        )

    def handle(self, *args, study_id, before, display, client_times, session_ids, **options):
        try:
            study = Study.objects.filter(pk=study_id).first()
        except ValidationError:
            study = None
        if study is None:
            raise CommandError(f"no study {study_id} in this database")
        try:
            moment = datetime.fromisoformat(before)
        except ValueError as exc:
            raise CommandError(f"--before {before!r} is not a date (YYYY-MM-DD) or ISO datetime") from exc
        if len(before) == 10:
            moment = datetime.combine(moment.date(), time.min)
        if timezone.is_naive(moment):
            moment = timezone.make_aware(moment, UTC)
        counts = participant_data_purge(
            study=study, before=moment, display=display, client_times=client_times, session_ids=session_ids
        )
        self.stdout.write(
            f"study {study.pk}: {counts['judgments']} judgments and {counts['assignments']} assignments "
            f"changed (rows created before {moment.isoformat()})"
        )
