"""Benchmark the new-study form's live preview (devtools.bench_preview); writes a section of
docs/benchmarks.md."""

from django.core.management.base import BaseCommand

from devtools.bench_preview import run


class Command(BaseCommand):
    help = (
        "Seconds per live preview (4 items) for typical and worst-case engine options; optional markdown out."
    )

    def add_arguments(self, parser):
        parser.add_argument("--repeats", type=int, default=9, help="runs per case")
        parser.add_argument("--out", default=None, help="benchmarks markdown file to update")

    def handle(self, *args, repeats, out, **options):
        self.stdout.write(run(repeats=repeats, out=out))
