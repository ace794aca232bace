"""Benchmark metric against the reference lpips package (devtools.bench_metric); writes a section of
docs/benchmarks.md."""

from django.core.management.base import BaseCommand

from devtools.bench_metric import run_bench


class Command(BaseCommand):
    help = "LPIPS evaluation and head training vs the reference lpips package; optional markdown out."

    def add_arguments(self, parser):
        parser.add_argument("--out", default=None, help="benchmarks markdown file to update")
        parser.add_argument("--quick", action="store_true", help="smaller sizes (for a smoke run)")

    def handle(self, *args, out, quick, **options):
        self.stdout.write(run_bench(out=out, quick=quick))
