"""Load test: N simulated annotators against gunicorn (+ Postgres, Redis) on loopback for a fixed time.

Each client loops: start an assignment (``next batch``), POST every trial's answer (``submit``), finish the
HIT (``complete``); back to back, or pausing before each answer as an annotator would (``think_s``); no
image downloads. Every answer the server acknowledges (200/201) is
recorded, so a test can check afterwards that each exists exactly once. A bare Django JSON endpoint
(`/livez`, no database) measured with the same clients gives the ratio.
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db import connection

from core.logs import GUNICORN_ACCESS_LOG_FORMAT
from crowdsim.simulation import HttpClient
from devtools.processes import child_process, cpu_seconds, free_port, processes
from devtools.reports import machine_line
from studies.collection import sentinels_per_hit


@contextlib.contextmanager
def gunicorn(
    env: dict, *, workers: int = 2, threads: int = 2, port: int | None = None, log_path: Path | None = None
):
    """Run `gunicorn config.wsgi` (gthread workers) on loopback; yields (base_url, process)."""
    port = port or free_port()
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "config.wsgi",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--worker-class",
        "gthread",
        "--threads",
        str(threads),
        "--graceful-timeout",
        "5",
        "--timeout",
        "60",
        "--log-level",
        "warning",
        "--preload",
        "--access-logformat",
        GUNICORN_ACCESS_LOG_FORMAT,
    ]
    with child_process(argv, env=env, log_path=log_path) as proc:
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 60
        while time.time() < deadline:
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            if proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {proc.returncode}")
            time.sleep(0.2)
        run_bare(url, clients=2 * workers * threads, seconds=2.0)  # warm every worker (URL conf, connections)
        yield url, proc


SENTINEL_RATE = 0.15


def loadtest_study(*, n_items: int = 3000, target: int = 3, hit_size: int = 20):
    """A simulation study of n_items test items (content-addressed-looking image names; no files needed)."""
    import hashlib

    from studies.models import Item, Study
    from studies.services import study_create
    from studies.targets import item_targets_sync

    study = study_create(
        name=f"load test {uuid.uuid4().hex[:6]}",
        kind="2afc",
        build_config={},
        config={
            "simulation": True,
            "hit_size": hit_size,
            "sentinel_rate": SENTINEL_RATE,
            "practice": False,
            "judgments_per_item": {"train": target, "val": target},
            "training": {"every": None},
        },
    )

    def name(*parts) -> str:
        return "stimuli/" + hashlib.sha256(repr(parts).encode()).hexdigest() + ".png"

    items = [
        Item(
            study=study,
            index=i,
            split="train" if i % 4 else "val",
            role="test",
            ref_image=name(i, "r"),
            p0_image=name(i, 0),
            p1_image=name(i, 1),
        )
        for i in range(n_items)
    ]
    items += [
        Item(
            study=study,
            index=n_items + k,
            split="train",
            role="sentinel",
            expected=("p0", "p1")[k % 2],
            category="sentinel",
            ref_image=name("s", k, "r"),
            p0_image=name("s", k, 0),
            p1_image=name("s", k, 1),
        )
        for k in range(10)
    ]
    Item.objects.bulk_create(items, batch_size=2000)
    item_targets_sync(study=study)
    Study.objects.filter(pk=study.pk).update(status=Study.Status.ACTIVE)
    study.refresh_from_db()
    return study


@contextlib.contextmanager
def autoanalyze(every_s: float = 10.0):
    """When PostgreSQL's autovacuum is off (as on the CI machine), ANALYZE the engine's tables every
    `every_s` seconds while the block runs, as autovacuum's autoanalyze would in service: a study's tables
    grow from empty during a run, and plans made from empty-table statistics cost several times more.
    Yields whether it runs."""
    from django.db import connection, connections

    if connection.vendor != "postgresql":
        yield False
        return
    with connection.cursor() as cursor:
        cursor.execute("SHOW autovacuum")
        if cursor.fetchone()[0] == "on":
            yield False
            return
    from judgments.models import Assignment, Judgment, Trial, Worker
    from studies.models import Item

    tables = ", ".join(model._meta.db_table for model in (Item, Worker, Assignment, Trial, Judgment))
    stop = threading.Event()

    def loop():
        try:
            while not stop.wait(every_s):
                with connections["default"].cursor() as cursor:
                    cursor.execute(f"ANALYZE {tables}")
        finally:
            connections.close_all()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield True
    finally:
        stop.set()
        thread.join()


def cpu_snapshot(web_pid: int) -> dict:
    """CPU seconds so far of the web server (master and workers), PostgreSQL's processes on this machine,
    and this process (the load generator). Differences of two snapshots split a run's CPU between them."""
    procs = processes()
    web = [pid for pid, ppid, _ in procs if pid == web_pid or ppid == web_pid]
    postgres = [pid for pid, _, name in procs if name.startswith("postgres")]
    return {
        "web": sum(map(cpu_seconds, web)),
        "postgres": sum(map(cpu_seconds, postgres)),
        "load generator": time.process_time(),
    }


class Recorder:
    """Latencies and counts of one run. Only requests sent inside the measurement window [window_start,
    window_end) count towards latency and throughput; every acknowledged answer is kept for the check."""

    def __init__(self, window_start: float = 0.0, window_end: float = float("inf")):
        self.lock = threading.Lock()
        self.window = (window_start, window_end)
        self.latency: dict[str, list[float]] = {"next_batch": [], "submit": [], "complete": [], "bare": []}
        self.acknowledged: list[tuple[str, str]] = []  # (assignment token, trial id)
        self.in_window = 0  # acknowledged answers sent inside the window
        self.errors: list[str] = []
        self.server_errors = 0
        self.hits = 0

    def add(self, op: str, sent: float, seconds: float) -> None:
        """`sent`: time.perf_counter() when the request went out."""
        if self.window[0] <= sent < self.window[1]:
            with self.lock:
                self.latency[op].append(seconds)

    def acknowledge(self, token: str, trial: str, sent: float) -> None:
        with self.lock:
            self.acknowledged.append((token, trial))
            self.in_window += self.window[0] <= sent < self.window[1]


def _answer(http: HttpClient, token: str, trial: dict, rec: Recorder, rng: random.Random) -> None:
    """POST one trial's answer, timed; an acknowledged answer is kept for the exactly-once check."""
    body = {
        "trial": trial["id"],
        "response": rng.choice(("left", "right")),
        "rt_ms": rng.uniform(300, 3000),
        "idempotency_key": uuid.uuid4().hex,
    }
    t = time.perf_counter()
    status, answer = http.request("POST", f"/api/v1/assignments/{token}/judgments/", body, attempts=60)
    rec.add("submit", t, time.perf_counter() - t)
    if status in (200, 201):
        rec.acknowledge(token, trial["id"], t)
    else:
        rec.errors.append(f"judgment {status} {str(answer)[:200]}")


def _answer_hit(
    http: HttpClient,
    token: str,
    trials: list[dict],
    deadline: float,
    rec: Recorder,
    rng: random.Random,
    finish_hits: bool,
    think_s: float,
) -> bool:
    """Answer the HIT's open trials, back to back or at the annotator's pace. False when the deadline
    stops the annotator first (unless finish_hits)."""
    due = time.perf_counter()
    for trial in trials:
        if trial["answered"]:
            continue
        if think_s:  # the annotator looks at the patches before answering
            due += rng.uniform(0.5, 1.5) * think_s
            if due >= deadline and not finish_hits:
                return False
            time.sleep(max(0.0, due - time.perf_counter()))
        elif time.perf_counter() >= deadline and not finish_hits:
            return False
        _answer(http, token, trial, rec, rng)
    return True


def _client(
    base_url: str,
    study_id: str,
    worker: str,
    arrive: float,
    deadline: float,
    rec: Recorder,
    rng: random.Random,
    finish_hits: bool,
    think_s: float = 0.0,
) -> None:
    """One annotator: arrives at `arrive` (perf_counter time), then starts HITs and answers them until
    `deadline`. With think_s, answers follow the annotator's own pace (0.5-1.5 x think_s apart), as the
    annotator page does: the next trial is already loaded and answers queue in an outbox that posts them in
    order, so a slow response delays the post, not the annotator."""
    time.sleep(max(0.0, arrive - time.perf_counter()))
    http = HttpClient(base_url, timeout=60)
    try:
        while time.perf_counter() < deadline:
            t = time.perf_counter()
            status, data = http.request(
                "POST",
                f"/api/v1/studies/{study_id}/assignments/",
                {"platform": "simulated", "worker_id": worker, "consent": True},
            )
            rec.add("next_batch", t, time.perf_counter() - t)
            if status == 409:
                time.sleep(0.2)
                continue
            if status not in (200, 201):
                rec.errors.append(f"start {status} {str(data)[:200]}")
                return
            token = data["token"]
            if not _answer_hit(http, token, data["trials"], deadline, rec, rng, finish_hits, think_s):
                return
            t = time.perf_counter()
            status, done = http.request("POST", f"/api/v1/assignments/{token}/submit/", attempts=60)
            rec.add("complete", t, time.perf_counter() - t)
            if status != 200:
                rec.errors.append(f"complete {status} {str(done)[:200]}")
                return
            with rec.lock:
                rec.hits += 1
    except Exception as exc:  # noqa: BLE001 - reported with the results
        rec.errors.append(f"{worker}: {exc!r}")
    finally:
        with rec.lock:
            rec.server_errors += http.retries
        http.close()


def run_load(
    base_url: str,
    study_id: str,
    *,
    clients: int = 200,
    seconds: float = 30.0,
    seed: int = 0,
    finish_hits: bool = False,
    think_s: float = 0.0,
    ramp_s: float = 0.0,
) -> dict:
    """`clients` simulated annotators. They arrive at random times spread evenly over the first `ramp_s`
    seconds (a crowd does not press start in the same millisecond), then work for `seconds` more, the
    measurement window: judgments/s and latencies count the requests sent in it. Each annotator answers
    back to back (think_s 0: the server's ceiling) or at their own pace, 0.5-1.5 x think_s per answer, so
    the crowd offers about clients / think_s judgments/s. Answers acknowledged outside the window are
    still returned in `acknowledged` for the exactly-once check."""
    start = time.perf_counter()
    window = (start + ramp_s, start + ramp_s + seconds)
    rec = Recorder(*window)
    arrivals = random.Random(seed)
    threads = [
        threading.Thread(
            target=_client,
            args=(
                base_url,
                study_id,
                f"load-{seed}-{c}",
                start + arrivals.uniform(0, ramp_s),
                window[1],
                rec,
                random.Random(seed * 7919 + c),
                finish_hits,
                think_s,
            ),
            daemon=True,
        )
        for c in range(clients)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    return {
        "clients": clients,
        "seconds": seconds,
        "ramp_s": ramp_s,
        "elapsed_s": elapsed,
        "judgments": rec.in_window,
        "judgments_per_s": rec.in_window / seconds,
        "hits": rec.hits,
        "errors": rec.errors,
        "retried_requests": rec.server_errors,
        "latency_ms": percentiles(rec.latency),
        "acknowledged": rec.acknowledged,
    }


def run_bare(base_url: str, *, clients: int = 200, seconds: float = 10.0) -> dict:
    rec = Recorder()
    deadline = time.time() + seconds
    count = [0]

    def loop():
        http = HttpClient(base_url)
        while time.time() < deadline:
            t = time.perf_counter()
            status, _ = http.request("GET", "/livez")
            rec.add("bare", t, time.perf_counter() - t)
            if status == 200:
                with rec.lock:
                    count[0] += 1
        http.close()

    start = time.perf_counter()
    threads = [threading.Thread(target=loop, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    return {"requests_per_s": count[0] / elapsed, "latency_ms": percentiles(rec.latency)["bare"]}


def percentiles(latency: dict[str, list[float]]) -> dict:
    out = {}
    for op, values in latency.items():
        if values:
            arr = np.array(values) * 1000
            out[op] = {
                "n": len(values),
                "p50": float(np.percentile(arr, 50)),
                "p95": float(np.percentile(arr, 95)),
                "p99": float(np.percentile(arr, 99)),
            }
    return out


def verify(study, acknowledged: list[tuple[str, str]]) -> dict:
    """Every acknowledged answer exists exactly once; no item holds more accepted judgments than its target,
    and the items' denormalised counts (n_judgments, n_open) match the rows they count."""
    from django.db.models import Count

    from judgments.models import Judgment, Trial
    from judgments.selectors import open_leases
    from studies.models import Item

    trial_ids = {trial for _, trial in acknowledged}
    stored = dict(
        Judgment.objects.filter(trial__public_id__in=trial_ids)
        .values_list("trial__public_id")
        .annotate(n=Count("pk"))
        .values_list("trial__public_id", "n")
    )
    missing = [t for t in trial_ids if stored.get(t, 0) == 0]
    duplicated = [t for t, n in stored.items() if n > 1]
    target = study.collection["judgments_per_item"]
    over = []
    counts = dict(
        Judgment.objects.filter(item__study=study, kind="test", assignment__excluded=False)
        .values_list("item_id")
        .annotate(n=Count("pk"))
        .values_list("item_id", "n")
    )
    for item in Item.objects.filter(study=study, role="test").only("pk", "split", "n_judgments"):
        if counts.get(item.pk, 0) > target[item.split] or item.n_judgments != counts.get(item.pk, 0):
            over.append(item.pk)
    open_trials = Trial.objects.filter(assignment__study=study, assignment__status="started").count()
    n_open = dict(Item.objects.filter(study=study, n_open__gt=0).values_list("pk", "n_open"))
    return {
        "acknowledged": len(trial_ids),
        "missing": len(missing),
        "duplicated": len(duplicated),
        "items_over_target_or_miscounted": len(over) + (n_open != open_leases(study=study)),
        "open_trials": open_trials,
    }


def run(
    *,
    clients: int = 200,
    seconds: float = 30.0,
    workers: int = 2,
    threads: int = 2,
    hit_size: int = 20,
    items: int = 4000,
    rate: float = 300.0,
    ramp: float | None = None,
) -> dict:
    """Start gunicorn, measure the bare endpoint, then a back-to-back and a paced run against fresh
    studies. Returns {"runs", "checks", "bare", "analyzing", "params"}; `report` renders it."""
    db = settings.DATABASES["default"]
    env = {
        k: os.environ[k]
        for k in ("DATABASE_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "CACHE_URL")
        if k in os.environ
    }
    env.update({"DJANGO_SETTINGS_MODULE": "devtools.settings_loadtest"})
    log = Path(settings.DATA_DIR) / "loadtest-gunicorn.log"
    think = clients / rate
    per_hit = hit_size + sentinels_per_hit({"hit_size": hit_size, "sentinel_rate": SENTINEL_RATE})
    ramp = per_hit * think if ramp is None else ramp
    runs, checks, analyzing = {}, {}, False
    with gunicorn(env, workers=workers, threads=threads, log_path=log) as (url, proc):
        bare = run_bare(url, clients=clients, seconds=min(10.0, seconds))
        for name, think_s in (("back to back", 0.0), (f"paced ({rate:g}/s offered)", think)):
            study = loadtest_study(n_items=items, hit_size=hit_size)
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:  # what autovacuum does in service (it may be off here)
                    cursor.execute("VACUUM ANALYZE")
            with autoanalyze() as analyzing:
                before = cpu_snapshot(proc.pid)
                result = run_load(
                    url, str(study.pk), clients=clients, seconds=seconds, think_s=think_s, ramp_s=ramp
                )
                after = cpu_snapshot(proc.pid)
            n = max(len(result["acknowledged"]), 1)  # the CPU covers the whole run, ramp included
            result["cpu_ms"] = {k: 1000 * (after[k] - before[k]) / n for k in before}
            runs[name], checks[name] = result, verify(study, result["acknowledged"])
    params = {
        "clients": clients,
        "seconds": seconds,
        "workers": workers,
        "threads": threads,
        "hit_size": hit_size,
        "rate": rate,
        "ramp": ramp,
        "think": think,
        "per_hit": per_hit,
        "engine": db["ENGINE"].rsplit(".", 1)[-1],
    }
    return {"runs": runs, "checks": checks, "bare": bare, "analyzing": analyzing, "params": params}


def _method(p: dict, analyzing: bool) -> str:
    """The paragraph that says how the load test ran."""
    clients, seconds, workers, threads = p["clients"], p["seconds"], p["workers"], p["threads"]
    hit_size, rate, ramp, think, per_hit = p["hit_size"], p["rate"], p["ramp"], p["think"], p["per_hit"]
    return (
        f"Machine: {machine_line()}. Command: `make loadtest` "
        f"(`manage.py loadtest --clients {clients} --seconds {seconds:g} --workers {workers} "
        f"--threads {threads} --hit-size {hit_size} --rate {rate:g} --ramp {ramp:g}`): "
        "gunicorn gthread on loopback, throttles counted in Redis, the load generator on the same "
        f"machine (it shares the two cores). Each client starts a HIT ({hit_size} test trials and "
        f"{per_hit - hit_size} sentinels), answers every trial, submits, repeats. The clients arrive "
        f"at random times over the first {ramp:.0f} s; the table covers the {seconds:g} s after that "
        "(requests sent in that window). Back to back: no pause between answers (the server's "
        "ceiling; with 200 clients and no pause, latency is queueing by design). Paced: each client "
        f"answers 0.5-1.5 x {think:.2f} s after its previous answer was due, as the annotator page "
        "does (the next trial is already loaded; answers post in order from an outbox), so the "
        f"crowd offers {rate:g} judgments/s. CPU per judgment is each side's CPU time over the run "
        "divided by the judgments stored."
        + (
            " PostgreSQL's autovacuum is off on this machine, so the run ANALYZEs the engine's tables "
            "every 10 s, as autovacuum would in service (its CPU counts in the PostgreSQL column)."
            if analyzing
            else ""
        )
    )


def _results_table(runs: dict, checks: dict) -> list[str]:
    """One column per run, one row per measure."""

    def row(label, fn):
        return f"| {label} | " + " | ".join(fn(r, checks[k]) for k, r in runs.items()) + " |"

    def pct(op):
        return lambda r, c: "{p50:.0f} / {p95:.0f} / {p99:.0f} ms".format(**r["latency_ms"][op])

    return [
        "| measure | " + " | ".join(runs) + " |",
        "|---|" + "---|" * len(runs),
        row("judgments/s (acknowledged)", lambda r, c: f"{r['judgments_per_s']:.0f}"),
        row("submit latency p50 / p95 / p99", pct("submit")),
        row("next-batch latency p50 / p95 / p99", pct("next_batch")),
        row(
            "CPU per judgment: web / PostgreSQL / load generator",
            lambda r, c: (
                " / ".join(f"{r['cpu_ms'][k]:.1f}" for k in ("web", "postgres", "load generator")) + " ms"
            ),
        ),
        row("HITs completed, errors", lambda r, c: f"{r['hits']}, {len(r['errors'])}"),
        row(
            "acknowledged answers missing / duplicated / items over target",
            lambda r, c: f"{c['missing']} / {c['duplicated']} / {c['items_over_target_or_miscounted']}",
        ),
    ]


def report(measured: dict) -> str:
    """The "loadtest" section of the benchmark report, as Markdown (without its markers)."""
    runs, checks, bare, analyzing = (measured[k] for k in ("runs", "checks", "bare", "analyzing"))
    p = measured["params"]
    rate = p["rate"]
    paced = runs[f"paced ({rate:g}/s offered)"]
    met = paced["judgments_per_s"] >= 0.97 * rate and all(
        paced["latency_ms"][op]["p99"] < 200 for op in ("submit", "next_batch")
    )
    lines = [
        "## Load test: annotators against gunicorn + " + p["engine"],
        "",
        _method(p, analyzing),
        "",
        *_results_table(runs, checks),
        "",
        "Bare Django JSON endpoint (`/livez`), same clients and server: "
        f"{bare['requests_per_s']:.0f} requests/s "
        f"(p99 {bare['latency_ms']['p99']:.0f} ms); back-to-back judgments/s are "
        f"{runs['back to back']['judgments_per_s'] / bare['requests_per_s']:.2f} of that.",
        "",
        f"Target ({rate:g} judgments/s with p99 submit and next-batch latency under 200 ms, paced run): "
        f"**{'met' if met else 'NOT met'}**.",
    ]
    return "\n".join(lines)


def problems(measured: dict) -> list:
    """(run, first errors, check) for each run with errors, or acknowledged answers missing, duplicated or
    over target."""
    runs, checks = measured["runs"], measured["checks"]
    return [
        (k, r["errors"][:5], checks[k])
        for k, r in runs.items()
        if r["errors"]
        or checks[k]["missing"]
        or checks[k]["duplicated"]
        or checks[k]["items_over_target_or_miscounted"]
    ]
