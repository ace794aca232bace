"""`make profile-answer`: where the answer path's web CPU goes (devtools.profile_answer); writes a section of
docs/benchmarks.md."""

from django.core.management.base import BaseCommand, CommandError

from devtools import profile_answer
from devtools.reports import write_section


class Command(BaseCommand):
    help = "Profile starts, answers and completions through the WSGI app; CPU per judgment split into parts."

    def add_arguments(self, parser):
        parser.add_argument("--hits", type=int, default=40, help="HITs profiled (after 5 warm-up HITs)")
        parser.add_argument("--items", type=int, default=4000, help="items of the fresh study")
        parser.add_argument("--study-id", default=None, help="profile this active 2AFC study instead")
        parser.add_argument(
            "--batch",
            type=int,
            default=3,
            help="answers per request, as the annotator page batches them (1: the single-answer endpoint)",
        )
        parser.add_argument("--out", default=None, help="benchmarks markdown file to update")

    def handle(self, *args, hits, items, study_id, out, batch, **options):
        if not 1 <= batch <= 20:
            raise CommandError("--batch must be in 1..20")
        try:
            measured = profile_answer.profile(hits=hits, items=items, study_id=study_id, batch=batch)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        args = f"--hits {hits} --items {items} --batch {batch}"
        command = f"`make profile-answer` (`manage.py profile_answer {args}`)"
        text = profile_answer.report(measured, command=command)
        self.stdout.write(text)
        if out:
            write_section(out, "answer-profile", text)
