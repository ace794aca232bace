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
from devtools.reference_loadtest import REFERENCE_LIVEZ, WEB_CPU_TARGET_MS
from devtools.reports import machine_line
from studies.collection import sentinels_per_hit

# gunicorn's keep-alive (its default is 2 s), as docker-compose runs it: the annotator page sends its answers
# about every ANSWER_FLUSH_MS (2 s), so with the default most sends found their connection closed and paid a
# new one; and a proxy that keeps idle upstream connections longer than gunicorn (deploy/Caddyfile) would
# send a POST on a connection gunicorn is closing. Idle connections wait in gthread's poller (no thread).
GUNICORN_KEEPALIVE_S = 75
GRANIAN_ACCESS_LOG_FORMAT = "%(addr)s [%(time)s] %(method)s %(path)s %(protocol)s %(status)d %(dt_ms).0fms"


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
        "--keep-alive",
        str(GUNICORN_KEEPALIVE_S),
        "--log-level",
        "warning",
        "--preload",
        # every request logged to the server's output, as docker-compose runs it (its CPU is production's)
        "--access-logfile",
        "-",
        "--logger-class",
        "core.access_log.GunicornLogger",
        "--access-logformat",
        GUNICORN_ACCESS_LOG_FORMAT,
    ]
    with _serving(argv, env=env, port=port, clients=2 * workers * threads, log_path=log_path) as served:
        yield served


@contextlib.contextmanager
def granian(
    env: dict, *, workers: int = 2, threads: int = 2, port: int | None = None, log_path: Path | None = None
):
    """Run the same WSGI application under granian (a Rust HTTP server; each worker process runs the
    application in `threads` blocking threads) on loopback, for comparison with gunicorn; yields
    (base_url, process)."""
    port = port or free_port()
    argv = [
        sys.executable,
        "-m",
        "granian",
        "--interface",
        "wsgi",
        "config.wsgi:application",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--blocking-threads",
        str(threads),
        "--runtime-mode",
        "st",
        "--no-ws",
        "--log-level",
        "warning",
        # an access log like gunicorn's (GUNICORN_ACCESS_LOG_FORMAT: the path without its query), so that
        # both servers pay for one
        "--access-log",
        "--access-log-fmt",
        GRANIAN_ACCESS_LOG_FORMAT,
    ]
    with _serving(argv, env=env, port=port, clients=2 * workers * threads, log_path=log_path) as served:
        yield served


# name -> the context manager that starts it: the production server first (docker-compose), then the one
# compared (make loadtest-servers)
SERVERS = {"gunicorn": gunicorn, "granian": granian}


@contextlib.contextmanager
def _serving(argv: list[str], *, env: dict, port: int, clients: int, log_path: Path | None):
    """Start a web server's argv, wait until its port answers, warm every worker (URL conf, connections)
    with `clients` bare clients; yields (base_url, process)."""
    with child_process(argv, env=env, log_path=log_path) as proc:
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 60
        while time.time() < deadline:
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            if proc.poll() is not None:
                raise RuntimeError(f"{argv[2]} exited with {proc.returncode}")
            time.sleep(0.2)
        run_bare(url, clients=clients, seconds=2.0)
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


def existing_study(study_id):
    """The active 2AFC study `study_id`, for a run against a study that exists already (a large one built
    by another command) instead of a fresh one; ValueError saying why it cannot serve."""
    from django.core.exceptions import ValidationError

    from studies.models import Study

    try:
        study = Study.objects.get(pk=study_id)
    except (Study.DoesNotExist, ValidationError, ValueError) as exc:
        raise ValueError(f"no study {study_id!r}") from exc
    if study.kind != "2afc" or study.status != Study.Status.ACTIVE:
        raise ValueError(
            f"study {study_id} is {study.kind}, {study.status}: the load test needs an active 2AFC study"
        )
    if not study.collection["simulation"]:
        raise ValueError(
            f"study {study_id} takes real workers; the load test's clients are simulated workers "
            "(a study with config simulation=true)"
        )
    return study


@contextlib.contextmanager
def autoanalyze(every_s: float = 10.0):
    """When PostgreSQL's autovacuum is off (as on the CI machine), look every `every_s` seconds while the
    block runs and ANALYZE each of the engine's tables that autovacuum's autoanalyze would: those changed
    by more than autovacuum_analyze_threshold + autovacuum_analyze_scale_factor x their rows since their
    last ANALYZE. A fresh study's tables grow from empty during a run, and plans made from empty-table
    statistics cost several times more; a BAPPS-scale study's tables (500k rows) barely change in a run,
    and analyzing them every 10 s regardless cost PostgreSQL CPU that showed as latency spikes.
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

    tables = [model._meta.db_table for model in (Item, Worker, Assignment, Trial, Judgment)]
    due = (
        "SELECT s.relname FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid "
        "WHERE s.relname = ANY(%s) AND s.n_mod_since_analyze > "
        "current_setting('autovacuum_analyze_threshold')::float8 "
        "+ current_setting('autovacuum_analyze_scale_factor')::float8 * greatest(c.reltuples, 0)"
    )
    stop = threading.Event()

    def loop():
        try:
            while not stop.wait(every_s):
                with connections["default"].cursor() as cursor:
                    cursor.execute(due, [tables])
                    for (name,) in cursor.fetchall():
                        cursor.execute(f"ANALYZE {connection.ops.quote_name(name)}")
        finally:
            connections.close_all()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield True
    finally:
        stop.set()
        thread.join()


def cpu_snapshot(web_pids: list[int], balancer_pid: int | None = None) -> dict:
    """CPU seconds so far of the web servers (each server's main process and its workers), PostgreSQL's
    processes on this machine, the balancer in front of several web servers (when there is one) and this
    process (the load generator). Differences of two snapshots split a run's CPU between them."""
    procs = processes()
    web = [pid for pid, ppid, _ in procs if pid in web_pids or ppid in web_pids]
    postgres = [pid for pid, _, name in procs if name.startswith("postgres")]
    out = {
        "web": sum(map(cpu_seconds, web)),
        "postgres": sum(map(cpu_seconds, postgres)),
        "load generator": time.process_time(),
    }
    if balancer_pid is not None:
        out["balancer"] = cpu_seconds(balancer_pid)
    return out


@contextlib.contextmanager
def web_servers(
    env: dict,
    *,
    instances: int = 1,
    workers: int = 2,
    threads: int = 2,
    log_dir: Path,
    server: str = "gunicorn",
):
    """`instances` web servers (`server`, one of SERVERS; each `workers` x `threads`) on their own loopback
    ports; with more than one, a round-robin TCP balancer (devtools.balancer, its own process) gives them
    one address. Yields (base_url, the servers' main pids, balancer pid or None)."""
    if server not in SERVERS:
        raise ValueError(f"unknown web server {server!r}; one of {', '.join(SERVERS)}")
    start = SERVERS[server]
    with contextlib.ExitStack() as stack:
        started = [
            stack.enter_context(
                start(env, workers=workers, threads=threads, log_path=log_dir / f"loadtest-{server}-{k}.log")
            )
            for k in range(instances)
        ]
        pids = [proc.pid for _, proc in started]
        if instances == 1:
            yield started[0][0], pids, None
            return
        port = free_port()
        backends = [url.rsplit(":", 1)[1] for url, _ in started]
        argv = [sys.executable, "-m", "devtools.balancer", str(port), *backends]
        balancer = stack.enter_context(
            child_process(argv, env=env, log_path=log_dir / "loadtest-balancer.log")
        )
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if balancer.poll() is not None or time.time() > deadline:
                    raise RuntimeError("the balancer did not start") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}", pids, balancer.pid


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
        self.started: list[str] = []  # the tokens of the HITs started (resumed ones too)

    def add(self, op: str, sent: float, seconds: float) -> None:
        """`sent`: time.perf_counter() when the request went out."""
        if self.window[0] <= sent < self.window[1]:
            with self.lock:
                self.latency[op].append(seconds)

    def acknowledge(self, token: str, trial: str, sent: float) -> None:
        with self.lock:
            self.acknowledged.append((token, trial))
            self.in_window += self.window[0] <= sent < self.window[1]


def _answer_body(trial: dict, rng: random.Random) -> dict:
    return {
        "trial": trial["id"],
        "response": rng.choice(("left", "right")),
        "rt_ms": rng.uniform(300, 3000),
        "idempotency_key": uuid.uuid4().hex,
    }


def _answer(http: HttpClient, token: str, trial: dict, rec: Recorder, rng: random.Random) -> None:
    """POST one trial's answer to the single-answer endpoint, timed; an acknowledged answer is kept for the
    exactly-once check."""
    t = time.perf_counter()
    status, answer = http.request(
        "POST", f"/api/v1/assignments/{token}/judgments/", _answer_body(trial, rng), attempts=60
    )
    rec.add("submit", t, time.perf_counter() - t)
    if status in (200, 201):
        rec.acknowledge(token, trial["id"], t)
    else:
        rec.errors.append(f"judgment {status} {str(answer)[:200]}")


def _answer_batch(
    http: HttpClient, token: str, trials: list[dict], rec: Recorder, rng: random.Random
) -> None:
    """POST answers to `trials` in one batch, as the annotator page sends its outbox, timed; each answer the
    server stored is kept for the exactly-once check."""
    t = time.perf_counter()
    body = {"answers": [_answer_body(trial, rng) for trial in trials]}
    status, data = http.request("POST", f"/api/v1/assignments/{token}/judgments/batch/", body, attempts=60)
    rec.add("submit", t, time.perf_counter() - t)
    if status != 200:
        rec.errors.append(f"judgment batch {status} {str(data)[:200]}")
        return
    for result in data["results"]:
        if result["status"] in (200, 201):
            rec.acknowledge(token, result["trial"], t)
        else:
            rec.errors.append(f"judgment {result['status']} {result.get('message', '')[:200]}")


def _answer_hit(
    http: HttpClient,
    token: str,
    trials: list[dict],
    deadline: float,
    rec: Recorder,
    rng: random.Random,
    finish_hits: bool,
    think_s: float,
    flush_s: float = 0.0,
) -> bool:
    """Answer the HIT's open trials, back to back or at the annotator's pace. False when the deadline
    stops the annotator first (unless finish_hits). With flush_s, answers go as the annotator page sends
    them: in batches, when the oldest unsent one has waited flush_s, when BATCH_MAX are waiting, and at
    once at the HIT's end; flush_s 0: one request per answer to the single-answer endpoint."""
    from judgments.answers import BATCH_MAX

    pending: list[dict] = []
    oldest = 0.0  # when the oldest pending answer was given

    def send() -> None:
        _answer_batch(http, token, pending, rec, rng)
        pending.clear()

    due = time.perf_counter()
    for trial in trials:
        if trial["answered"]:
            continue
        if think_s:  # the annotator looks at the patches before answering
            due += rng.uniform(0.5, 1.5) * think_s
            if pending and oldest + flush_s <= due:  # the page's timer fires first
                time.sleep(max(0.0, oldest + flush_s - time.perf_counter()))
                send()
            if due >= deadline and not finish_hits:
                if pending:
                    send()
                return False
            time.sleep(max(0.0, due - time.perf_counter()))
        elif time.perf_counter() >= deadline and not finish_hits:
            if pending:
                send()
            return False
        if flush_s <= 0:
            _answer(http, token, trial, rec, rng)
            continue
        if not pending:
            oldest = time.perf_counter()
        pending.append(trial)
        if len(pending) >= BATCH_MAX:
            send()
    if pending:
        send()
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
    flush_s: float = 0.0,
) -> None:
    """One annotator: arrives at `arrive` (perf_counter time), then starts HITs and answers them until
    `deadline`. With think_s, answers follow the annotator's own pace (0.5-1.5 x think_s apart), as the
    annotator page does: the next trial is already loaded and answers queue in an outbox that posts them in
    order (in batches: flush_s, _answer_hit), so a slow response delays the post, not the annotator."""
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
            with rec.lock:
                rec.started.append(token)
            if not _answer_hit(
                http, token, data["trials"], deadline, rec, rng, finish_hits, think_s, flush_s
            ):
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
    flush_s: float | None = None,
) -> dict:
    """`clients` simulated annotators. They arrive at random times spread evenly over the first `ramp_s`
    seconds (a crowd does not press start in the same millisecond), then work for `seconds` more, the
    measurement window: judgments/s and latencies count the requests sent in it. Each annotator answers
    back to back (think_s 0: the server's ceiling) or at their own pace, 0.5-1.5 x think_s per answer, so
    the crowd offers about clients / think_s judgments/s. Answers acknowledged outside the window are
    still returned in `acknowledged` for the exactly-once check. The annotators' worker ids are new on
    every call, so a run against a study that earlier runs used starts no annotator mid-HIT or with a
    history there. `started`: the tokens of the HITs they started. flush_s: how the annotators send their
    answers (_answer_hit); None: as the annotator page does (settings ANSWER_FLUSH_MS)."""
    if flush_s is None:
        flush_s = settings.PERCEPTLAB_CROWD["ANSWER_FLUSH_MS"] / 1000
    prefix = f"load-{uuid.uuid4().hex[:8]}-"
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
                f"{prefix}{c}",
                start + arrivals.uniform(0, ramp_s),
                window[1],
                rec,
                random.Random(seed * 7919 + c),
                finish_hits,
                think_s,
                flush_s,
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
        "started": rec.started,
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
    and the denormalised counts (items' n_judgments and n_open, the HITs' tallies) match what they count."""
    from django.db.models import Count

    from judgments import tallies
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
        # the HITs' judgment counters (judgments.tallies) against the judgments, and the items' open leases
        "items_over_target_or_miscounted": len(over)
        + (n_open != open_leases(study=study))
        + len(tallies.mismatches(study_id=study.pk)),
        "open_trials": open_trials,
    }


def release_open(study, tokens: list[str]) -> int:
    """Give back the HITs of `tokens` (run_load's "started") that a run left open in `study`: its annotators
    stop mid-HIT when the window closes. The next run against the same study then finds none of this run's
    leases to expire and no items held by it. Returns how many it gave back."""
    from judgments.assignments import assignment_return
    from judgments.models import Assignment

    still = list(
        Assignment.objects.filter(
            study=study, status=Assignment.Status.STARTED, token__in=set(tokens)
        ).values_list("token", flat=True)
    )
    for token in still:
        assignment_return(token=token)
    return len(still)


RUNS = ("back to back", "paced")


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
    web_instances: int = 1,
    study_id: str | None = None,
    runs: tuple[str, ...] = RUNS,
    server: str = "gunicorn",
    flush_ms: int | None = None,
) -> dict:
    """Start the web server `server` (`web_instances` of them behind one balanced address), measure the
    bare endpoint, then a back-to-back and a paced run (or those named in `runs`), each against a fresh
    study, or all against the existing active 2AFC simulation study `study_id` (existing_study). The
    annotators send their answers as the annotator page does (flush_ms None: settings ANSWER_FLUSH_MS; 0:
    one request per answer). Returns {"runs", "checks", "bare", "analyzing", "params"}; `report` renders
    it."""
    if flush_ms is None:
        flush_ms = settings.PERCEPTLAB_CROWD["ANSWER_FLUSH_MS"]
    db = settings.DATABASES["default"]
    env = {
        k: os.environ[k]
        for k in ("DATABASE_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "CACHE_URL")
        if k in os.environ
    }
    env.update({"DJANGO_SETTINGS_MODULE": "devtools.settings_loadtest"})
    given = existing_study(study_id) if study_id else None
    config = {"hit_size": hit_size, "sentinel_rate": SENTINEL_RATE} if given is None else given.collection
    hit_size = config["hit_size"]
    think = clients / rate
    per_hit = hit_size + sentinels_per_hit(config)
    ramp = per_hit * think if ramp is None else ramp
    measured, checks, analyzing = {}, {}, False
    servers = web_servers(
        env,
        instances=web_instances,
        workers=workers,
        threads=threads,
        log_dir=Path(settings.DATA_DIR),
        server=server,
    )
    with servers as (url, web_pids, balancer_pid):
        bare = run_bare(url, clients=clients, seconds=min(10.0, seconds))
        for kind in runs:
            name, think_s = (
                ("back to back", 0.0) if kind == "back to back" else (f"paced ({rate:g}/s offered)", think)
            )
            study = given or loadtest_study(n_items=items, hit_size=hit_size)
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:  # what autovacuum does in service (it may be off here)
                    cursor.execute("VACUUM ANALYZE")
            with autoanalyze() as analyzing:
                before = cpu_snapshot(web_pids, balancer_pid)
                result = run_load(
                    url,
                    str(study.pk),
                    clients=clients,
                    seconds=seconds,
                    think_s=think_s,
                    ramp_s=ramp,
                    flush_s=flush_ms / 1000,
                )
                after = cpu_snapshot(web_pids, balancer_pid)
            n = max(len(result["acknowledged"]), 1)  # the CPU covers the whole run, ramp included
            result["cpu_ms"] = {k: 1000 * (after[k] - before[k]) / n for k in before}
            measured[name], checks[name] = result, verify(study, result["acknowledged"])
            release_open(study, result["started"])
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
        "web_instances": web_instances,
        "server": server,
        "flush_ms": flush_ms,
        "runs": tuple(runs),
        "items": items,
        "study": None if given is None else {"id": str(given.pk), "items": given.items.count()},
    }
    return {"runs": measured, "checks": checks, "bare": bare, "analyzing": analyzing, "params": params}


def _command(p: dict) -> str:
    """The command line that reproduces a run with parameters `p`."""
    extra = ""
    if p.get("server", "gunicorn") != "gunicorn":
        extra += f" --server {p['server']}"
    if p["web_instances"] > 1:
        extra += f" --web-instances {p['web_instances']}"
    if p["study"]:
        extra += f" --study-id {p['study']['id']}"
    if p.get("rounds", 1) > 1:
        extra += f" --rounds {p['rounds']}"
    if tuple(p["runs"]) != RUNS:
        extra += "".join(f" --run {'paced' if k == 'paced' else 'back-to-back'}" for k in p["runs"])
    return (
        f"manage.py loadtest --clients {p['clients']} --seconds {p['seconds']:g} --workers {p['workers']} "
        f"--threads {p['threads']} --hit-size {p['hit_size']} --rate {p['rate']:g} --ramp {p['ramp']:g} "
        f"--flush-ms {p.get('flush_ms', 0)}" + extra
    )


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _load_note() -> str:
    """The machine's load when the report is written: other jobs on the cores make every figure lower."""
    one, five, _ = os.getloadavg()
    return (
        f"Load average when this was written: {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} "
        "cores; above the test's own processes, other jobs shared the machine and the figures are low."
        if five > 1.5 * os.cpu_count()
        else f"Load average when this was written: {one:.1f} (1 min), {five:.1f} (5 min)."
    )


def _servers(p: dict) -> str:
    server = p.get("server", "gunicorn")
    kind = "gunicorn gthread" if server == "gunicorn" else "granian (WSGI, blocking threads)"
    if p["web_instances"] == 1:
        return f"{kind} ({_plural(p['workers'], 'worker')} x {p['threads']} threads) on loopback"
    return (
        f"{p['web_instances']} {server} instances ({_plural(p['workers'], 'worker')} x "
        f"{p['threads']} threads each) "
        "behind one loopback address (devtools.balancer: round robin per connection, in its own process, "
        "as a load balancer in front of several web machines)"
    )


def _sending(p: dict) -> str:
    """How the run's annotators send their answers (run's flush_ms)."""
    flush_ms = p.get("flush_ms", 0)
    if not flush_ms:
        return "Each answer is its own request (`--flush-ms 0`), and the submit latency is that request's."
    return (
        f"Answers go as the annotator page sends them (ANSWER_FLUSH_MS {flush_ms}): in batches to the batch "
        f"endpoint, once the oldest unsent answer has waited {flush_ms / 1000:g} s, once {_batch_max()} "
        "wait (back to back), and at once at the HIT's end; the submit latency is a batch request's."
    )


def _batch_max() -> int:
    from judgments.answers import BATCH_MAX

    return BATCH_MAX


def _method(p: dict, analyzing: bool) -> str:
    """The paragraph that says how the load test ran."""
    seconds = p["seconds"]
    hit_size, rate, ramp, think, per_hit = p["hit_size"], p["rate"], p["ramp"], p["think"], p["per_hit"]
    study = (
        f"Every run uses the existing study {p['study']['id']} ({p['study']['items']:,} items). "
        if p["study"]
        else f"Each run gets a fresh study of {p['items']:,} items. "
    )
    return (
        f"Machine: {machine_line()}. Command: `{'make loadtest-scale' if p['study'] else 'make loadtest'}` "
        f"(`{_command(p)}`): {_servers(p)}, throttles "
        "counted in Redis, the load generator on the same "
        f"machine (it shares the {os.cpu_count()} cores). {study}Each client starts a HIT ({hit_size} test "
        f"trials and {per_hit - hit_size} sentinels), answers every trial, submits, repeats. The clients "
        f"arrive at random times over the first {ramp:.0f} s; the table covers the {seconds:g} s after that "
        "(requests sent in that window). Back to back: no pause between answers (the server's "
        "ceiling; with 200 clients and no pause, latency is queueing by design). Paced: each client "
        f"answers 0.5-1.5 x {think:.2f} s after its previous answer was due, as the annotator page "
        "does (the next trial is already loaded; answers post in order from an outbox), so the "
        f"crowd offers {rate:g} judgments/s. {_sending(p)} CPU per judgment is each side's CPU time over "
        "the run divided by the judgments stored."
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
        def cell(r, c):
            if op not in r["latency_ms"]:  # a short window can hold no start of a back-to-back run
                return "none sent in the window"
            return "{p50:.0f} / {p95:.0f} / {p99:.0f} ms".format(**r["latency_ms"][op])

        return cell

    sides = ["web", "postgres", "load generator"]
    if any("balancer" in r["cpu_ms"] for r in runs.values()):
        sides.insert(2, "balancer")
    labels = {
        "web": "web",
        "postgres": "PostgreSQL",
        "balancer": "balancer",
        "load generator": "load generator",
    }
    return [
        "| measure | " + " | ".join(runs) + " |",
        "|---|" + "---|" * len(runs),
        row("judgments/s (acknowledged)", lambda r, c: f"{r['judgments_per_s']:.0f}"),
        row("submit latency p50 / p95 / p99", pct("submit")),
        row("next-batch latency p50 / p95 / p99", pct("next_batch")),
        row(
            "CPU per judgment: " + " / ".join(labels[k] for k in sides),
            lambda r, c: " / ".join(f"{r['cpu_ms'].get(k, 0.0):.2f}" for k in sides) + " ms",
        ),
        row("HITs completed, errors", lambda r, c: f"{r['hits']}, {len(r['errors'])}"),
        row(
            "acknowledged answers missing / duplicated / items over target",
            lambda r, c: f"{c['missing']} / {c['duplicated']} / {c['items_over_target_or_miscounted']}",
        ),
    ]


# issue 19's targets for the paced run, on either machine class: the rate, both p99s, and the web CPU per
# judgment; and the slower machine it was set on: a Xeon VM whose bare /livez did 2,073 requests/s
LATENCY_TARGET_MS = 200


def _paced_target(measured: dict) -> str | None:
    """Whether the paced run met the target, as the report's last lines (None without a paced run): the
    web CPU as measured, and scaled to the reference machine by the bare /livez rates (a machine whose
    cores run this code half as fast serves half the /livez requests and spends twice the CPU on each)."""
    rate = measured["params"]["rate"]
    paced = measured["runs"].get(f"paced ({rate:g}/s offered)")
    if paced is None:
        return None
    web = paced["cpu_ms"].get("web", 0.0)
    met = (
        paced["judgments_per_s"] >= 0.97 * rate
        and all(
            op in paced["latency_ms"] and paced["latency_ms"][op]["p99"] < LATENCY_TARGET_MS
            for op in ("submit", "next_batch")
        )
        and web <= WEB_CPU_TARGET_MS
    )
    livez, verdict = measured["bare"]["requests_per_s"], "met" if met else "NOT met"
    return (
        f"Target ({rate:g} judgments/s, p99 submit and next-batch latency under {LATENCY_TARGET_MS} ms, "
        f"web CPU per judgment at most {WEB_CPU_TARGET_MS:g} ms; paced run): **{verdict}**. "
        f"The web CPU per judgment scaled to the slower Xeon VM of issue 19 (bare `/livez` "
        f"{REFERENCE_LIVEZ:,} requests/s, here {livez:,.0f}): {web * livez / REFERENCE_LIVEZ:.2f} ms."
    )


def report(measured: dict) -> str:
    """The "loadtest" section of the benchmark report, as Markdown (without its markers)."""
    runs, checks, bare, analyzing = (measured[k] for k in ("runs", "checks", "bare", "analyzing"))
    p = measured["params"]
    lines = [
        f"## Load test: annotators against {p.get('server', 'gunicorn')} + " + p["engine"],
        "",
        _method(p, analyzing),
        "",
        *_results_table(runs, checks),
        "",
        "Bare Django JSON endpoint (`/livez`), same clients and server: "
        f"{bare['requests_per_s']:.0f} requests/s (p99 {bare['latency_ms']['p99']:.0f} ms)"
        + (
            "; back-to-back judgments/s are "
            f"{runs['back to back']['judgments_per_s'] / bare['requests_per_s']:.2f} of that."
            if "back to back" in runs
            else "."
        ),
    ]
    target = _paced_target(measured)
    if target:
        lines += ["", target]
    lines += ["", _load_note()]
    return "\n".join(lines)


STUDY_RATIO_TARGET = 1.5  # issue 19: start and answer p99 on a BAPPS-scale study within 1.5x a fresh one's


def study_report(rounds: list[tuple[dict, dict]]) -> str:
    """The "loadtest-study" section: the same runs against a fresh study and against an existing (large)
    one, side by side, `rounds` times over ((fresh, existing) measurements per round), with the large
    one's p99s as multiples of the fresh one's in each round. With several rounds the target is judged on
    the median ratio: one run's p99 on this machine moves by about as much as the target's margin."""
    from judgments.models import Judgment

    fresh, given = rounds[0]
    p = given["params"]
    n_judgments = Judgment.objects.filter(assignment__study_id=p["study"]["id"]).exclude(kind="practice")
    n = len(rounds)
    lines = [
        "## Load test: an existing large study next to a fresh one",
        "",
        _method(p, given["analyzing"]),
        f"First the same runs against a fresh study of {fresh['params']['items']:,} items with the same HIT "
        f"shape; then against the existing study, which held {n_judgments.count():,} judgments (practice "
        "aside) when this was written, the run's own included."
        + (
            f" The pair ran {n} times in turn (`--rounds {n}`); the target is judged on the median of the "
            "rounds' ratios."
            if n > 1
            else ""
        ),
        "",
    ]
    ops = (("next_batch", "start (next batch)"), ("submit", "answer (submit)"))
    for kind in given["runs"]:
        ratios = {op: [] for op, _ in ops}
        for k, (round_fresh, round_given) in enumerate(rounds, 1):
            a, b = round_fresh["runs"][kind], round_given["runs"][kind]
            lines += [
                f"### {kind}" + (f", round {k}" if n > 1 else ""),
                "",
                *_results_table(
                    {"fresh study": a, "existing study": b},
                    {
                        "fresh study": round_fresh["checks"][kind],
                        "existing study": round_given["checks"][kind],
                    },
                ),
                "",
            ]
            shown = []
            for op, label in ops:
                if op in a["latency_ms"] and op in b["latency_ms"]:
                    ratios[op].append(b["latency_ms"][op]["p99"] / max(a["latency_ms"][op]["p99"], 1e-9))
                    shown.append(f"{label} p99 {ratios[op][-1]:.2f}x the fresh study's")
            if shown and n > 1:
                lines += [f"Round {k}: " + "; ".join(shown) + ".", ""]
        verdicts = []
        for op, label in ops:
            if ratios[op]:
                ratio = float(np.median(ratios[op]))
                met = "met" if ratio <= STUDY_RATIO_TARGET else "NOT met"
                of = f" (median of {n} rounds)" if n > 1 else ""
                verdicts.append(f"{label} p99 {ratio:.2f}x the fresh study's{of} ({met})")
        if verdicts:
            lines += [
                f"Target (p99 within {STUDY_RATIO_TARGET:g}x of the fresh study): "
                + "; ".join(verdicts)
                + ".",
                "",
            ]
    lines.append(_load_note())
    return "\n".join(lines)


def instances_report(by_instances: dict[int, dict]) -> str:
    """The "loadtest-instances" section: the same back-to-back run against 1..N gunicorn instances behind
    one address (`by_instances`: instances -> run's measurements), and what limits the sum on this machine."""
    first = by_instances[min(by_instances)]
    p = first["params"]
    cores = os.cpu_count()
    rows = [
        "| web instances | workers in all | judgments/s | /livez requests/s | "
        "CPU per judgment: web / PostgreSQL / balancer / load generator | errors | missing / duplicated |",
        "|---:|---:|---:|---:|---|---:|---|",
    ]
    for n, m in sorted(by_instances.items()):
        r, c = m["runs"]["back to back"], m["checks"]["back to back"]
        cpu = " / ".join(
            f"{r['cpu_ms'].get(k, 0.0):.1f}" for k in ("web", "postgres", "balancer", "load generator")
        )
        rows.append(
            f"| {n} | {n * p['workers']} | {r['judgments_per_s']:.0f} | {m['bare']['requests_per_s']:.0f} | "
            f"{cpu} ms | {len(r['errors'])} | {c['missing']} / {c['duplicated']} |"
        )
    one = by_instances[min(by_instances)]["runs"]["back to back"]["judgments_per_s"]
    most = max(by_instances)
    many = by_instances[most]["runs"]["back to back"]["judgments_per_s"]
    return "\n".join(
        [
            f"## Load test: one web address, several {p.get('server', 'gunicorn')} instances",
            "",
            f"Machine: {machine_line()}. Command: `make loadtest-instances` "
            f"(`{_command(by_instances[most]['params'])}`, which runs the back-to-back ceiling against 1 "
            f"instance, then {most}). Each instance is a "
            f"separate {p.get('server', 'gunicorn')} ({_plural(p['workers'], 'worker')} x {p['threads']} "
            "threads) on its own "
            "port, as on its "
            "own machine; with more than one, devtools.balancer (a round-robin TCP balancer, its own "
            "process) gives them one address, and every client's keep-alive connection stays on one "
            "instance. "
            "They share only PostgreSQL and Redis, as web machines behind a load balancer do. "
            f"{p['clients']} clients, no pause between answers, {p['seconds']:g} s measured after a "
            f"{p['ramp']:.0f} s ramp; a fresh study per run.",
            "",
            *rows,
            "",
            f"{most} instances stored {many / one:.2f}x the judgments/s of one. What limits the sum here: "
            f"this machine has {cores} cores, and every process of the test runs on them: the web "
            "workers of every instance, PostgreSQL, Redis, the balancer and the load generator. Adding "
            "instances on the same cores adds processes, not CPU; throughput adds up where each instance "
            "gets its own cores (its own machine), and PostgreSQL's CPU per judgment (the shared part) "
            "bounds the sum: one PostgreSQL core serves about 1000 / (its ms per judgment) judgments/s. "
            + _load_note(),
        ]
    )


def servers_report(rounds: list[dict[str, dict]]) -> str:
    """The "loadtest-servers" section: paced runs against each web server of SERVERS in turn, `rounds`
    times over (each round: server -> that run's measurements), so that the machine's drift falls on both
    alike; the web CPU per judgment of each run, and each server's mean."""
    first = rounds[0][next(iter(SERVERS))]
    p = first["params"]
    kind = f"paced ({p['rate']:g}/s offered)"
    rows = [
        "| round | web server | judgments/s | p99 submit / next batch | "
        "CPU per judgment: web / PostgreSQL / load generator | /livez requests/s | errors |",
        "|---:|---|---:|---|---|---:|---:|",
    ]
    web = {server: [] for server in SERVERS}
    for k, by_server in enumerate(rounds, 1):
        for server, m in by_server.items():
            r = m["runs"][kind]
            web[server].append(r["cpu_ms"]["web"])
            cpu = " / ".join(f"{r['cpu_ms'][c]:.2f}" for c in ("web", "postgres", "load generator"))
            p99 = " / ".join(
                f"{r['latency_ms'][op]['p99']:.0f}" if op in r["latency_ms"] else "-"
                for op in ("submit", "next_batch")
            )
            rows.append(
                f"| {k} | {server} | {r['judgments_per_s']:.0f} | {p99} ms | {cpu} ms | "
                f"{m['bare']['requests_per_s']:.0f} | {len(r['errors'])} |"
            )
    means = "; ".join(
        f"{server} {float(np.mean(v)):.2f} ms (range {min(v):.2f}-{max(v):.2f})" for server, v in web.items()
    )
    spread = max(max(v) - min(v) for v in web.values())
    return "\n".join(
        [
            "## Load test: the web server's share of the CPU per judgment",
            "",
            f"Machine: {machine_line()}. Command: `make loadtest-servers` (`{_command(p)} --compare-servers "
            f"{len(rounds)}`): the paced run against gunicorn gthread (the production server, "
            "docker-compose) and against granian (a Rust HTTP server running the same WSGI application in "
            f"blocking threads), each {_plural(p['workers'], 'worker')} x {p['threads']} threads, in turn, "
            f"{len(rounds)} times; a fresh study per run. The same server's runs differed by up to "
            f"{spread:.2f} ms of web CPU per judgment here, so the servers alternate and the means count.",
            "",
            *rows,
            "",
            f"Mean web CPU per judgment: {means}. The application's own share is in the answer-path "
            "profile above (`make profile-answer`); the rest is the server's: reading and parsing the "
            "request, handing it to a thread, writing the response, and the system calls for each.",
            "",
            _load_note(),
        ]
    )


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
