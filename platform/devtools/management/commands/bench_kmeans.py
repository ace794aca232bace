"""Science check: k-means vs random AlexNet trunk under lin heads, on a simulated crowd
(devtools.bench_kmeans); writes a section of docs/benchmarks.md."""

from django.core.management.base import BaseCommand

from devtools.bench_kmeans import run


class Command(BaseCommand):
    help = "k-means vs random trunk: held-out 2AFC of lin heads trained on a simulated crowd."

    def add_arguments(self, parser):
        parser.add_argument("--out", default=None, help="benchmarks markdown file to update")
        parser.add_argument("--quick", action="store_true", help="300/100 triplets, one seed (a smoke run)")

    def handle(self, *args, out, quick, **options):
        self.stdout.write(run(out=out, quick=quick))
