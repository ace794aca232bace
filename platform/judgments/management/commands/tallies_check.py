"""Check the HITs' judgment counters (judgments.tallies) against the judgments they count, and optionally
repair them. They are exact as long as every judgment is stored through the answer path; run this after a
deploy during which an older version stored answers past migration judgments 0005 (which counted the
judgments then stored), or whenever the dashboard's totals look wrong."""

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from judgments import tallies
from studies.models import Study


class Command(BaseCommand):
    help = (
        "Compare each HIT's judgment counters with its judgments (every study, or --study); --repair sets "
        "them from the judgments. Exits 1 when counters were wrong and not repaired."
    )

    def add_arguments(self, parser):
        parser.add_argument("--study", default=None, help="one study's id (default: every study)")
        parser.add_argument("--repair", action="store_true", help="set wrong counters from the judgments")

    def handle(self, *args, study, repair, **options):
        studies = Study.objects.order_by("created_at")
        if study is not None:
            try:
                studies = studies.filter(pk=study)
                if not studies.exists():
                    raise CommandError(f"no study {study!r}")
            except (ValidationError, ValueError) as exc:
                raise CommandError(f"no study {study!r}") from exc
        wrong = 0
        for s in studies.only("pk", "name"):
            found = tallies.mismatches(study_id=s.pk)
            if not found:
                continue
            wrong += len(found)
            self.stdout.write(f"study {s.pk} ({s.name}): {len(found)} HIT(s) with wrong counters")
            if repair:
                fixed = tallies.resync(study_id=s.pk)
                self.stdout.write(f"  repaired {fixed}")
        if not wrong:
            self.stdout.write(self.style.SUCCESS("every HIT's counters match its judgments"))
        elif not repair:
            raise SystemExit(1)
