"""Write a study's export archive to a file now (no Celery job, no Export row)."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from exports.archive import file_digest
from exports.services import export_archive_write
from studies.models import Study


class Command(BaseCommand):
    help = "Write a study's export (BAPPS layout, manifests and the restore/ section) to a zip file."

    def add_arguments(self, parser):
        parser.add_argument("study_id")
        parser.add_argument("--out", required=True, help="zip file to write")
        parser.add_argument("--include-excluded", action="store_true", help="count QC-excluded judgments too")
        parser.add_argument(
            "--include-user-agent", action="store_true", help="publish judgments' user agents too"
        )

    def handle(self, *args, study_id, out, include_excluded, include_user_agent=False, **options):
        study = Study.objects.filter(pk=study_id).first()
        if study is None:
            raise CommandError(f"no study {study_id} in this database")
        try:
            with open(Path(out), "wb") as handle:  # streamed: images and the archive are never held whole
                summary = export_archive_write(
                    study=study,
                    fileobj=handle,
                    include_excluded=include_excluded,
                    include_user_agent=include_user_agent,
                )
        except BaseException:
            Path(out).unlink(missing_ok=True)  # no half-written archive left behind
            raise
        sha256, size = file_digest(Path(out))
        self.stdout.write(
            f"{out}: {size} bytes, sha256 {sha256}, "
            f"{summary['n_items']} items, {summary['n_judgments']} judgments"
        )
