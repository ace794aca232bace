"""`make loadtest`: N simulated annotators against gunicorn on loopback (see judgments.loadtest)."""

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
        parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes")
        parser.add_argument("--threads", type=int, default=2, help="threads per gunicorn worker (4 x 2 measured best here)")
        parser.add_argument("--items", type=int, default=4000)
        parser.add_argument("--rate", type=float, default=300.0,
                            help="judgments/s the paced run offers (think time = clients / rate)")  # fmt: skip
        parser.add_argument("--out", default=None, help="benchmarks markdown file to update")

    def handle(self, *args, clients, seconds, workers, threads, items, rate, out, **options):
        import os

        from distortions.bench import _replace_section, machine_line

        db = settings.DATABASES["default"]
        env = {k: os.environ[k] for k in ("DATABASE_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND") if k in os.environ}
        env.update({"DJANGO_SETTINGS_MODULE": "config.settings.loadtest"})
        log = Path(settings.DATA_DIR) / "loadtest-gunicorn.log"
        think = clients / rate
        runs, checks = {}, {}
        with loadtest.gunicorn(env, workers=workers, threads=threads, log_path=log) as (url, proc):
            bare = loadtest.run_bare(url, clients=clients, seconds=min(10.0, seconds))
            for name, think_s in (("back to back", 0.0), (f"paced ({rate:g}/s offered)", think)):
                study = loadtest.loadtest_study(n_items=items)
                if connection.vendor == "postgresql":
                    with connection.cursor() as cursor:  # fresh statistics, as autovacuum keeps them in service
                        cursor.execute("ANALYZE")
                before = loadtest.cpu_snapshot(proc.pid)
                result = loadtest.run_load(url, str(study.pk), clients=clients, seconds=seconds, think_s=think_s)
                after = loadtest.cpu_snapshot(proc.pid)
                n = max(result["judgments"], 1)
                result["cpu_ms"] = {k: 1000 * (after[k] - before[k]) / n for k in before}
                runs[name], checks[name] = result, loadtest.verify(study, result["acknowledged"])
        paced = runs[f"paced ({rate:g}/s offered)"]
        met = paced["judgments_per_s"] >= 0.97 * rate and paced["latency_ms"]["submit"]["p99"] < 200

        def row(label, fn):
            return f"| {label} | " + " | ".join(fn(r, checks[k]) for k, r in runs.items()) + " |"

        def pct(op):
            return lambda r, c: "{p50:.0f} / {p95:.0f} / {p99:.0f} ms".format(**r["latency_ms"][op])

        lines = [
            "<!-- loadtest:begin -->", "## Load test: annotators against gunicorn + " + db["ENGINE"].rsplit(".", 1)[-1], "",
            f"Machine: {machine_line()}. Command: `make loadtest` (`manage.py loadtest --clients {clients} --seconds "
            f"{seconds:g} --workers {workers} --threads {threads} --rate {rate:g}`): gunicorn gthread on loopback, the load "
            "generator on the same machine (it shares the two cores). Each client starts a HIT (20 test trials and "
            "3 sentinels), answers every trial, submits, repeats. Back to back: no pause between answers (the "
            f"server's ceiling). Paced: each client pauses 0.5-1.5 x {think:.2f} s before each answer, so the crowd "
            f"offers {rate:g} judgments/s. CPU per judgment is each side's CPU time over the run divided by the "
            "judgments stored.", "",
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
            f"Target ({rate:g} judgments/s with p99 submit latency under 200 ms): **{'met' if met else 'NOT met'}**.",
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
