"""`make loadtest`: N simulated annotators against gunicorn on loopback (see judgments.loadtest)."""

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

from judgments import loadtest


class Command(BaseCommand):
    help = "Load test: judgments/s and next-batch/submit latency percentiles against gunicorn; optional markdown out."

    def add_arguments(self, parser):
        parser.add_argument("--clients", type=int, default=200)
        parser.add_argument("--seconds", type=float, default=30.0)
        parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes")
        parser.add_argument("--threads", type=int, default=8, help="threads per gunicorn worker")
        parser.add_argument("--items", type=int, default=4000)
        parser.add_argument("--out", default=None, help="benchmarks markdown file to update")

    def handle(self, *args, clients, seconds, workers, threads, items, out, **options):
        import os

        from distortions.bench import _replace_section, machine_line

        db = settings.DATABASES["default"]
        study = loadtest.loadtest_study(n_items=items)
        env = {k: os.environ[k] for k in ("DATABASE_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND") if k in os.environ}
        env.update({"DJANGO_SETTINGS_MODULE": "config.settings.loadtest"})
        log = Path(settings.DATA_DIR) / "loadtest-gunicorn.log"
        with loadtest.gunicorn(env, workers=workers, threads=threads, log_path=log) as (url, _):
            bare = loadtest.run_bare(url, clients=clients, seconds=min(10.0, seconds))
            result = loadtest.run_load(url, str(study.pk), clients=clients, seconds=seconds)
        check = loadtest.verify(study, result["acknowledged"])
        lat = result["latency_ms"]
        ratio = result["judgments_per_s"] / bare["requests_per_s"] if bare["requests_per_s"] else float("nan")
        lines = [
            "<!-- loadtest:begin -->", "## Load test: annotators against gunicorn + " + db["ENGINE"].rsplit(".", 1)[-1], "",
            f"Machine: {machine_line()}. Command: `make loadtest` (`manage.py loadtest --clients {clients} --seconds "
            f"{seconds:g} --workers {workers} --threads {threads}`), gunicorn gthread on loopback, the load generator on "
            "the same machine (it shares the cores). Each client: start a HIT, answer every trial at once (no think "
            "time), submit, repeat.", "",
            "| measure | value |", "|---|---|",
            f"| judgments/s (acknowledged) | {result['judgments_per_s']:.0f} (target 300: {'met' if result['judgments_per_s'] >= 300 else 'NOT met'}) |",
            f"| submit latency p50 / p95 / p99 | {lat['submit']['p50']:.0f} / {lat['submit']['p95']:.0f} / {lat['submit']['p99']:.0f} ms (target p99 < 200 ms: {'met' if lat['submit']['p99'] < 200 else 'NOT met'}) |",
            f"| next-batch latency p50 / p95 / p99 | {lat['next_batch']['p50']:.0f} / {lat['next_batch']['p95']:.0f} / {lat['next_batch']['p99']:.0f} ms |",
            f"| bare Django JSON endpoint (`/livez`), same clients | {bare['requests_per_s']:.0f} requests/s, p99 {bare['latency_ms']['p99']:.0f} ms |",
            f"| judgments/s as a share of bare requests/s | {ratio:.2f} |",
            f"| HITs completed, errors | {result['hits']}, {len(result['errors'])} |",
            f"| afterwards: acknowledged answers missing / duplicated / items over target | {check['missing']} / {check['duplicated']} / {check['items_over_target_or_miscounted']} |",
            "<!-- loadtest:end -->",
        ]  # fmt: skip
        text = "\n".join(lines)
        self.stdout.write(text)
        if out:
            _replace_section(Path(out), text)
        if result["errors"] or check["missing"] or check["duplicated"] or check["items_over_target_or_miscounted"]:
            self.stderr.write(f"problems: {result['errors'][:5]} {check}")
            raise SystemExit(1)
