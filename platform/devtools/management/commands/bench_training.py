"""Benchmark continuous training (see devtools.bench_training); writes a section of docs/benchmarks.md."""

from django.core.management.base import BaseCommand

from devtools.bench_training import run


class Command(BaseCommand):
    help = "Time from the N-th new judgment to updated dashboard numbers, at 10k and 100k judgments."

    def add_arguments(self, parser):
        parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
        parser.add_argument("--out", default=None, help="benchmarks markdown file to update")

    def handle(self, *args, sizes, out, **options):
        run(sizes=sizes, out=out)
