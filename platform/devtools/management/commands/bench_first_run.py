"""Time `make run` to its first page, cold and warm (devtools.bench_first_run); writes docs/benchmarks.md."""

from django.core.management.base import BaseCommand

from devtools.bench_first_run import run


class Command(BaseCommand):
    help = "Time make run on an empty data dir to its first page (cold, warm) and the demo's milestones."

    def add_arguments(self, parser):
        parser.add_argument(
            "--via",
            choices=["make", "manage"],
            default="make",
            help="run `make run`, or its three manage.py steps with this interpreter (no install step)",
        )
        parser.add_argument(
            "--watch", type=float, default=420.0, help="seconds to watch the demo's milestones (0: none)"
        )
        parser.add_argument("--out", default=None, help="benchmarks markdown file to update")

    def handle(self, *args, via, watch, out, **options):
        run(via=via, watch_s=watch, out=out, log=self.stdout.write)
