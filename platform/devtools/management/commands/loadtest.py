"""`make loadtest`: N simulated annotators against gunicorn (or granian, `--server`) on loopback
(devtools.loadtest); writes a section of docs/benchmarks.md."""

import os

from django.core.management.base import BaseCommand, CommandError

from devtools import loadtest
from devtools.reports import write_section


class Command(BaseCommand):
    help = (
        "Load test: judgments/s and next-batch/submit latency percentiles against gunicorn (or granian); "
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
            "--rounds",
            type=int,
            default=1,
            help="with --study-id: run the fresh study and the existing one in turn this many times; the "
            "target is judged on the median ratio",
        )
        parser.add_argument(
            "--run",
            dest="runs",
            action="append",
            choices=["back-to-back", "paced"],
            help="the runs to make (repeatable; default both)",
        )
        parser.add_argument(
            "--server",
            choices=list(loadtest.SERVERS),
            default="gunicorn",
            help="the web server (gunicorn: production, docker-compose; granian: for comparison)",
        )
        parser.add_argument(
            "--compare-servers",
            type=int,
            default=0,
            metavar="ROUNDS",
            help="run the paced run against each web server in turn, ROUNDS times; writes the "
            "loadtest-servers section (web CPU per judgment per server)",
        )
        parser.add_argument(
            "--flush-ms",
            type=int,
            default=None,
            help="how the annotators send answers: as the annotator page does, in batches once the oldest "
            "unsent answer has waited this long (default: settings ANSWER_FLUSH_MS); 0: one request per "
            "answer to the single-answer endpoint",
        )
        parser.add_argument("--out", default=None, help="benchmarks markdown file to update")

    def handle(self, *args, out, web_instances, study_id, runs, server, compare_servers, rounds, **options):
        if web_instances < 1:
            raise CommandError("--web-instances must be at least 1")
        if rounds < 1:
            raise CommandError("--rounds must be at least 1")
        if compare_servers < 0:
            raise CommandError("--compare-servers must be at least 1 (or 0: no comparison)")
        if compare_servers and (study_id or web_instances > 1 or runs or server != "gunicorn"):
            raise CommandError(
                "--compare-servers makes paced runs against every server on a fresh study; it takes none "
                "of --study-id, --web-instances, --run and --server"
            )
        if rounds > 1 and not study_id:
            raise CommandError("--rounds repeats the --study-id comparison; give --study-id")
        if options["flush_ms"] is not None and not 0 <= options["flush_ms"] <= 60000:
            raise CommandError("--flush-ms must be in 0..60000")
        keys = ("clients", "seconds", "workers", "threads", "hit_size", "items", "rate", "ramp", "flush_ms")
        params = {k: options[k] for k in keys}
        params["runs"] = tuple(k.replace("-", " ") for k in runs) if runs else loadtest.RUNS
        params["server"] = server
        try:
            if compare_servers:
                params["runs"] = ("paced",)
                by_round = [
                    {s: loadtest.run(**{**params, "server": s}) for s in loadtest.SERVERS}
                    for _ in range(compare_servers)
                ]
                measured = {f"{s} {k}": m for k, by in enumerate(by_round, 1) for s, m in by.items()}
                section, text = "loadtest-servers", loadtest.servers_report(by_round)
            elif web_instances > 1:
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
                pairs = [
                    (
                        loadtest.run(**{**params, "hit_size": hit_size, "items": items}),
                        loadtest.run(**params, study_id=study_id),
                    )
                    for _ in range(rounds)
                ]
                for m in (m for pair in pairs for m in pair):
                    m["params"]["rounds"] = rounds  # for the report's command line
                measured = {
                    f"{side} {k}": m
                    for k, pair in enumerate(pairs, 1)
                    for side, m in zip(("fresh", "given"), pair, strict=True)
                }
                section, text = "loadtest-study", loadtest.study_report(pairs)
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
