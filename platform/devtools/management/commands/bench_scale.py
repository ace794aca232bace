"""Benchmark the platform at BAPPS scale (devtools.bench_scale); writes a section of docs/benchmarks.md."""

import json

from django.core.management.base import BaseCommand, CommandError

from crowdsim.scale import BAPPS_ITEMS, ScaleParams
from devtools.bench_scale import FIGURES, RESULT, figure, run


class Command(BaseCommand):
    help = (
        "Dashboard, workers and QC reads, export, and retrain on the BAPPS-scale study (manage.py "
        "scale_study) next to a small one, each figure with its peak RSS. PostgreSQL."
    )

    def add_arguments(self, parser):
        d = ScaleParams()
        parser.add_argument("--items", type=int, default=BAPPS_ITEMS)
        parser.add_argument("--judgments", type=int, default=d.judgments)
        parser.add_argument("--small-items", type=int, default=3_000)
        parser.add_argument("--small-judgments", type=int, default=1_000)
        parser.add_argument("--distinct", type=int, default=d.distinct)
        parser.add_argument("--figures", nargs="+", choices=FIGURES, default=list(FIGURES))
        parser.add_argument("--out", default=None, help="benchmarks markdown file to update")
        # internal: one figure on one study, in this process (the parent reads the JSON line)
        parser.add_argument(
            "--figure", choices=FIGURES, help="run one figure here (used by the bench itself)"
        )
        parser.add_argument("--study", default=None)

    def handle(self, *args, **o):
        if o["figure"]:
            if not o["study"]:
                raise CommandError("--figure needs --study")
            self.stdout.write(RESULT + json.dumps(figure(o["figure"], o["study"])))
            return
        run(
            items=o["items"],
            judgments=o["judgments"],
            small_items=o["small_items"],
            small_judgments=o["small_judgments"],
            figures=o["figures"],
            distinct=o["distinct"],
            out=o["out"],
        )
