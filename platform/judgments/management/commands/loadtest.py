"""`make loadtest`: N simulated annotators against gunicorn on loopback (see judgments.loadtest)."""

import os
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import connection

from judgments import loadtest


class Command(BaseCommand):
    help = "Load test: judgments/s and next-batch/submit latency percentiles against gunicorn; optional markdown out."

    def add_arguments(self, parser):
        parser.add_argument("--clients", type=int, default=200)
        parser.add_argument("--seconds", type=float, default=30.0, help="length of each of the two runs")
        parser.add_argument("--workers", type=int, default=os.cpu_count() or 2,
                            help="gunicorn worker processes (default: one per core, measured best here)")
        parser.add_argument("--threads", type=int, default=2, help="threads per gunicorn worker (2 measured best here)")
        parser.add_argument("--hit-size", type=int, default=20, help="test trials per HIT (plus sentinels at 15%%)")
        parser.add_argument("--items", type=int, default=4000)
        parser.add_argument("--rate", type=float, default=300.0,
                            help="judgments/s the paced run offers (think time = clients / rate)")
        parser.add_argument("--ramp", type=float, default=None,
                            help="seconds over which the clients arrive, before the measured window (default: "
                                 "one HIT's length at the paced rate)")  # fmt: skip
        parser.add_argument("--out", default=None, help="benchmarks markdown file to update")

    def handle(self, *args, clients, seconds, workers, threads, hit_size, items, rate, ramp, out, **options):
        from distortions.bench import _replace_section, machine_line
        from studies.collection import sentinels_per_hit

        db = settings.DATABASES["default"]
        env = {k: os.environ[k] for k in ("DATABASE_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "CACHE_URL")
               if k in os.environ}  # fmt: skip
        env.update({"DJANGO_SETTINGS_MODULE": "config.settings.loadtest"})
        log = Path(settings.DATA_DIR) / "loadtest-gunicorn.log"
        think = clients / rate
        per_hit = hit_size + sentinels_per_hit({"hit_size": hit_size, "sentinel_rate": loadtest.SENTINEL_RATE})
        ramp = per_hit * think if ramp is None else ramp
        runs, checks = {}, {}
        with loadtest.gunicorn(env, workers=workers, threads=threads, log_path=log) as (url, proc):
            bare = loadtest.run_bare(url, clients=clients, seconds=min(10.0, seconds))
            for name, think_s in (("back to back", 0.0), (f"paced ({rate:g}/s offered)", think)):
                study = loadtest.loadtest_study(n_items=items, hit_size=hit_size)
                if connection.vendor == "postgresql":
                    with connection.cursor() as cursor:  # what autovacuum does in service (it may be off here)
                        cursor.execute("VACUUM ANALYZE")
                with loadtest.autoanalyze() as analyzing:
                    before = loadtest.cpu_snapshot(proc.pid)
                    result = loadtest.run_load(url, str(study.pk), clients=clients, seconds=seconds, think_s=think_s,
                                               ramp_s=ramp)  # fmt: skip
                    after = loadtest.cpu_snapshot(proc.pid)
                n = max(len(result["acknowledged"]), 1)  # the CPU covers the whole run, ramp included
                result["cpu_ms"] = {k: 1000 * (after[k] - before[k]) / n for k in before}
                runs[name], checks[name] = result, loadtest.verify(study, result["acknowledged"])
        paced = runs[f"paced ({rate:g}/s offered)"]
        met = paced["judgments_per_s"] >= 0.97 * rate and all(paced["latency_ms"][op]["p99"] < 200 for op in ("submit", "next_batch"))

        def row(label, fn):
            return f"| {label} | " + " | ".join(fn(r, checks[k]) for k, r in runs.items()) + " |"

        def pct(op):
            return lambda r, c: "{p50:.0f} / {p95:.0f} / {p99:.0f} ms".format(**r["latency_ms"][op])

        lines = [
            "<!-- loadtest:begin -->", "## Load test: annotators against gunicorn + " + db["ENGINE"].rsplit(".", 1)[-1], "",
            f"Machine: {machine_line()}. Command: `make loadtest` (`manage.py loadtest --clients {clients} --seconds "
            f"{seconds:g} --workers {workers} --threads {threads} --hit-size {hit_size} --rate {rate:g} --ramp {ramp:g}`): "
            "gunicorn gthread on loopback, throttles counted in Redis, the load generator on the same machine (it "
            f"shares the two cores). Each client starts a HIT ({hit_size} test trials and {per_hit - hit_size} sentinels), "
            "answers every trial, submits, repeats. The clients arrive at random times over the first "
            f"{ramp:.0f} s; the table covers the {seconds:g} s after that (requests sent in that window). Back to "
            "back: no pause between answers (the server's ceiling; with 200 clients and no pause, latency is queueing "
            f"by design). Paced: each client answers 0.5-1.5 x {think:.2f} s after its previous answer was due, as "
            "the annotator page does (the next trial is already loaded; answers post in order from an outbox), so "
            f"the crowd offers {rate:g} judgments/s. CPU per judgment is each side's CPU time over the run divided "
            "by the judgments stored."
            + (" PostgreSQL's autovacuum is off on this machine, so the run ANALYZEs the engine's tables every 10 s, "
               "as autovacuum would in service (its CPU counts in the PostgreSQL column)." if analyzing else ""), "",
            "| measure | " + " | ".join(runs) + " |", "|---|" + "---|" * len(runs),
            row("judgments/s (acknowledged)", lambda r, c: f"{r['judgments_per_s']:.0f}"),
            row("submit latency p50 / p95 / p99", pct("submit")),
            row("next-batch latency p50 / p95 / p99", pct("next_batch")),
            row("CPU per judgment: web / PostgreSQL / load generator",
                lambda r, c: " / ".join(f"{r['cpu_ms'][k]:.1f}" for k in ("web", "postgres", "load generator")) + " ms"),
            row("HITs completed, errors", lambda r, c: f"{r['hits']}, {len(r['errors'])}"),
            row("acknowledged answers missing / duplicated / items over target",
                lambda r, c: f"{c['missing']} / {c['duplicated']} / {c['items_over_target_or_miscounted']}"),
            "",
            f"Bare Django JSON endpoint (`/livez`), same clients and server: {bare['requests_per_s']:.0f} requests/s "
            f"(p99 {bare['latency_ms']['p99']:.0f} ms); back-to-back judgments/s are "
            f"{runs['back to back']['judgments_per_s'] / bare['requests_per_s']:.2f} of that.",
            "",
            f"Target ({rate:g} judgments/s with p99 submit and next-batch latency under 200 ms, paced run): **{'met' if met else 'NOT met'}**.",
            "<!-- loadtest:end -->",
        ]  # fmt: skip
        text = "\n".join(lines)
        self.stdout.write(text)
        if out:
            _replace_section(Path(out), text)
        problems = [(k, r["errors"][:5], checks[k]) for k, r in runs.items() if r["errors"] or checks[k]["missing"]
                    or checks[k]["duplicated"] or checks[k]["items_over_target_or_miscounted"]]  # fmt: skip
        if problems:
            self.stderr.write(f"problems: {problems}")
            raise SystemExit(1)
