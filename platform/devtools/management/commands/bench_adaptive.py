"""Science benchmark: adaptive samplers against uniform sampling on a simulated crowd
(devtools.bench_adaptive); writes a section of docs/benchmarks.md and the learning-curve plot."""

from django.core.management.base import BaseCommand

from devtools.bench_adaptive import run


class Command(BaseCommand):
    help = "Adaptive vs uniform sampling: held-out 2AFC and metric-ranking resolution against judgments."

    def add_arguments(self, parser):
        parser.add_argument("--out", default=None, help="benchmarks markdown file to update")
        parser.add_argument("--plot", default=None, help="where to write the learning curves (SVG)")
        parser.add_argument(
            "--quick", action="store_true", help="600 triplets, 2 seeds, one crowd (a smoke run)"
        )

    def handle(self, *args, out, plot, quick, **options):
        self.stdout.write(run(out=out, plot=plot, quick=quick))
