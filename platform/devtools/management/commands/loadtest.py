"""`make loadtest`: N simulated annotators against gunicorn on loopback (devtools.loadtest); writes a
section of docs/benchmarks.md."""

import os

from django.core.management.base import BaseCommand

from devtools import loadtest
from devtools.reports import write_section


class Command(BaseCommand):
    help = (
        "Load test: judgments/s and next-batch/submit latency percentiles against gunicorn; "
        "optional markdown out."
    )

    def add_arguments(self, parser):
        parser.add_argument("--clients", type=int, default=200)
        parser.add_argument("--seconds", type=float, default=30.0, help="length of each of the two runs")
        parser.add_argument(
            "--workers",
            type=int,
            default=os.cpu_count() or 2,
            help="gunicorn worker processes (default: one per core, measured best here)",
        )
        parser.add_argument(
            "--threads", type=int, default=2, help="threads per gunicorn worker (2 measured best here)"
        )
        parser.add_argument(
            "--hit-size", type=int, default=20, help="test trials per HIT (plus sentinels at 15%%)"
        )
        parser.add_argument("--items", type=int, default=4000)
        parser.add_argument(
            "--rate",
            type=float,
            default=300.0,
            help="judgments/s the paced run offers (think time = clients / rate)",
        )
        parser.add_argument(
            "--ramp",
            type=float,
            default=None,
            help="seconds over which the clients arrive, before the measured window (default: "
            "one HIT's length at the paced rate)",
        )
        parser.add_argument("--out", default=None, help="benchmarks markdown file to update")

    def handle(self, *args, out, **options):
        keys = ("clients", "seconds", "workers", "threads", "hit_size", "items", "rate", "ramp")
        measured = loadtest.run(**{k: options[k] for k in keys})
        text = loadtest.report(measured)
        self.stdout.write(text)
        if out:
            write_section(out, "loadtest", text)
        problems = loadtest.problems(measured)
        if problems:
            self.stderr.write(f"problems: {problems}")
            raise SystemExit(1)
