"""`make loadtest`: N simulated annotators against gunicorn on loopback (devtools.loadtest); writes a
section of docs/benchmarks.md."""

import os

from django.core.management.base import BaseCommand, CommandError

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
        parser.add_argument(
            "--web-instances",
            type=int,
            default=1,
            help="more than 1: run the back-to-back ceiling against 1 gunicorn instance, then against this "
            "many behind one address (devtools.balancer), each of --workers x --threads; writes the "
            "loadtest-instances section",
        )
        parser.add_argument(
            "--study-id",
            default=None,
            help="run against this existing active 2AFC simulation study (its hit size applies), after the "
            "same runs against a fresh study of that hit size; writes the loadtest-study section, which "
            "sets the two side by side",
        )
        parser.add_argument(
            "--run",
            dest="runs",
            action="append",
            choices=["back-to-back", "paced"],
            help="the runs to make (repeatable; default both)",
        )
        parser.add_argument("--out", default=None, help="benchmarks markdown file to update")

    def handle(self, *args, out, web_instances, study_id, runs, **options):
        if web_instances < 1:
            raise CommandError("--web-instances must be at least 1")
        keys = ("clients", "seconds", "workers", "threads", "hit_size", "items", "rate", "ramp")
        params = {k: options[k] for k in keys}
        params["runs"] = tuple(k.replace("-", " ") for k in runs) if runs else loadtest.RUNS
        try:
            if web_instances > 1:
                params["runs"] = ("back to back",)
                measured = {
                    n: loadtest.run(**params, web_instances=n, study_id=study_id) for n in (1, web_instances)
                }
                section, text = "loadtest-instances", loadtest.instances_report(measured)
            elif study_id:  # the existing study next to a fresh one of the same HIT shape
                given = loadtest.existing_study(study_id)
                hit_size = given.collection["hit_size"]
                # enough items that the fresh study never runs out of work for the clients' HITs
                items = max(params["items"], 2 * params["clients"] * hit_size)
                measured = {
                    "fresh": loadtest.run(**{**params, "hit_size": hit_size, "items": items}),
                    "given": loadtest.run(**params, study_id=study_id),
                }
                section, text = "loadtest-study", loadtest.study_report(measured["fresh"], measured["given"])
            else:
                measured = {1: loadtest.run(**params)}
                section, text = "loadtest", loadtest.report(measured[1])
        except ValueError as exc:  # an unusable --study-id
            raise CommandError(str(exc)) from exc
        self.stdout.write(text)
        if out:
            write_section(out, section, text)
        problems = [problem for m in measured.values() for problem in loadtest.problems(m)]
        if problems:
            self.stderr.write(f"problems: {problems}")
            raise SystemExit(1)
