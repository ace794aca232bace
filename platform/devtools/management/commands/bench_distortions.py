"""Benchmark the distortion engine (devtools.bench_distortions); writes a section of docs/benchmarks.md."""

from django.core.management.base import BaseCommand

from devtools.bench_distortions import run


class Command(BaseCommand):
    help = "Items/s per distortion, 2AFC triplets/s and the CNN pool's training time; optional markdown out."

    def add_arguments(self, parser):
        parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
        parser.add_argument(
            "--no-cnn", action="store_true", help="skip timing the CNN pool training (minutes)"
        )
        parser.add_argument("--out", default=None, help="benchmarks markdown file to update")

    def handle(self, *args, seconds, no_cnn, out, **options):
        self.stdout.write(run(seconds=seconds, cnn=not no_cnn, out=out))
