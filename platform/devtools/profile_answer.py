"""Where the answer path's web CPU goes: one start, every answer and one completion of a HIT, through the
real WSGI application (middleware, URL resolver, DRF views, services, the database and the throttle's
Redis round trips), in this process, under cProfile with a CPU clock.

gunicorn hands a worker the same WSGI environ; what this leaves out is gunicorn itself (reading and
parsing the HTTP request, writing the response, its gthread loop) and the kernel's socket work, which
`make loadtest` measures in its web CPU column: the difference between the two figures is that part.

Each function's own CPU time is put in one part by the file it lives in; a built-in function's (a C call
such as a socket send, json's scanner or str.join) goes to the part of the Python function that called it,
so "psycopg" holds the driver's socket calls and "Redis" the throttle's. The parts add up to the profiled
total, which is scaled to the CPU time measured without the profiler (cProfile inflates small calls).
"""

from __future__ import annotations

import cProfile
import io
import json
import math
import pstats
import random
import time
import uuid
from collections import defaultdict

# (part, path fragments of the files whose functions belong to it); the first match wins.
PARTS = (
    ("psycopg: the driver (statements out, rows in, type adaptation)", ("/psycopg/", "/psycopg_binary/")),
    ("Redis client: the throttle's round trip", ("/redis/",)),
    (
        "throttles (core.throttling, DRF's throttle plumbing)",
        ("/core/throttling.py", "rest_framework/throttling"),
    ),
    ("JSON parsing (StrictJSONParser, DRF parsers)", ("/core/parsers.py", "rest_framework/parsers")),
    ("JSON rendering (DRF renderer, encoder)", ("rest_framework/renderers", "rest_framework/utils/encoders")),
    ("json module (encode, decode)", ("/json/",)),
    ("DRF request, view dispatch, serializers", ("/rest_framework/",)),
    (
        "Django ORM: query building, compiling, model instances",
        ("django/db/models/",),
    ),
    (
        "Django DB layer: connection, cursor wrappers, transactions",
        ("django/db/",),
    ),
    (
        "middleware (security, CSP, whitenoise, sessions, CSRF, auth, messages, axes)",
        ("django/middleware/", "/core/middleware.py", "/whitenoise/", "/axes/", "django/contrib/"),
    ),
    (
        "Django handler, URL resolver, request and response objects",
        ("django/core/", "django/urls/", "django/http/"),
    ),
    (
        "Django utilities (timezone, functional, encoding, datastructures)",
        ("django/utils/", "django/dispatch/"),
    ),
    ("logging", ("/logging/",)),
    ("the platform's code (judgments, studies, core)", ("/platform/",)),
)
OTHER = "other (stdlib: uuid, datetime, hashlib, random, ...)"


def part_of(filename: str) -> str | None:
    """The part a function belongs to by its file; None for a built-in (its caller decides)."""
    if filename == "~" or filename.startswith("<"):
        return None
    for part, fragments in PARTS:
        if any(fragment in filename for fragment in fragments):
            return part
    return OTHER


def attribute(stats: pstats.Stats) -> dict[str, float]:
    """Seconds of own time per part; a built-in's own time is split over its callers' parts in proportion
    to the time spent in it from each (a built-in called by a built-in goes to OTHER)."""
    out: dict[str, float] = defaultdict(float)
    for (filename, _, _), (_, _, own, _, callers) in stats.stats.items():
        part = part_of(filename)
        if part is not None:
            out[part] += own
            continue
        total = sum(c[2] for c in callers.values()) or 0.0
        if not total:
            out[OTHER] += own
            continue
        for (caller_file, _, _), c in callers.items():
            out[part_of(caller_file) or OTHER] += own * c[2] / total
    return dict(out)


class WsgiClient:
    """Calls the WSGI application as gunicorn would, with a JSON body; returns (status, parsed body)."""

    def __init__(self, app):
        self.app = app

    def post(self, path: str, body: dict | None = None) -> tuple[int, dict]:
        raw = json.dumps(body or {}).encode()
        environ = {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": path,
            "QUERY_STRING": "",
            "CONTENT_TYPE": "application/json",
            "CONTENT_LENGTH": str(len(raw)),
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "HTTP_HOST": "127.0.0.1:8000",
            "HTTP_ACCEPT": "application/json",
            "wsgi.input": io.BytesIO(raw),
            "wsgi.url_scheme": "http",
            "wsgi.errors": io.StringIO(),
            "wsgi.multithread": True,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
            "wsgi.version": (1, 0),
        }
        status = []
        chunks = self.app(environ, lambda s, headers, exc_info=None: status.append(int(s.split()[0])))
        try:
            data = b"".join(chunks)
        finally:
            if hasattr(chunks, "close"):
                chunks.close()
        return status[0], json.loads(data) if data else {}


OPS = ("start", "answer", "complete")
OP_NAMES = {"start": "start", "answer": "answer batch", "complete": "completion"}


def run_hit(
    client: WsgiClient, study_id, worker: str, rng: random.Random, profiles: dict | None, batch: int = 1
) -> int:
    """Start a HIT, answer every trial, complete it; each request under its op's profiler when given.
    batch 1: one request per answer to the single-answer endpoint; more: the answers in batches of that
    many to the batch endpoint, as the annotator page sends them. Returns the answers stored."""

    def call(op, path, body=None):
        if profiles is not None:
            profiles[op].enable()
        try:
            return client.post(path, body)
        finally:
            if profiles is not None:
                profiles[op].disable()

    body = {"platform": "simulated", "worker_id": worker, "consent": True}
    status, hit = call("start", f"/api/v1/studies/{study_id}/assignments/", body)
    if status not in (200, 201):
        raise RuntimeError(f"start answered {status}: {hit}")
    token = hit["token"]
    answers = [
        {
            "trial": trial["id"],
            "response": rng.choice(("left", "right")),
            "rt_ms": rng.uniform(300, 3000),
            "idempotency_key": uuid.uuid4().hex,
        }
        for trial in hit["trials"]
    ]
    for k in range(0, len(answers), batch):
        if batch == 1:
            status, out = call("answer", f"/api/v1/assignments/{token}/judgments/", answers[k])
        else:
            body = {"answers": answers[k : k + batch]}
            status, out = call("answer", f"/api/v1/assignments/{token}/judgments/batch/", body)
            if status == 200 and any(r["status"] != 201 for r in out["results"]):
                status = 400
        if status not in (200, 201):
            raise RuntimeError(f"answer answered {status}: {out}")
    status, out = call("complete", f"/api/v1/assignments/{token}/submit/")
    if status != 200:
        raise RuntimeError(f"complete answered {status}: {out}")
    return len(hit["trials"])


def _cpu_per_request(client, study_id, hits: int, rng, batch: int = 1) -> dict[str, float]:
    """CPU seconds per start, answer request (`batch` answers) and completion without a profiler (each
    request timed alone)."""
    spent: dict[str, list[float]] = {op: [] for op in OPS}

    class Timer:
        def __init__(self, op):
            self.op = op

        def enable(self):
            self.t = time.process_time()

        def disable(self):
            spent[self.op].append(time.process_time() - self.t)

    timers = {op: Timer(op) for op in OPS}
    for h in range(hits):
        run_hit(client, study_id, f"plain-{h}-{uuid.uuid4().hex[:6]}", rng, timers, batch)
    return {op: sum(v) / len(v) for op, v in spent.items()}


def profile(
    *,
    hits: int = 40,
    warmup: int = 5,
    items: int = 4000,
    study_id=None,
    hit_size: int = 20,
    batch: int = 3,
) -> dict:
    """Profile `hits` HITs (after `warmup` unprofiled ones) of a fresh load-test study, or of the active
    2AFC study `study_id`, their answers sent in batches of `batch` (1: one request each, to the single-
    answer endpoint). Returns per-op CPU (ms, unprofiled), per-op part breakdowns (ms, scaled to the
    unprofiled CPU), the per-judgment mix, and the CPU per judgment with one request per answer
    ("single", unprofiled) for comparison."""
    from django.core.wsgi import get_wsgi_application

    from devtools.loadtest import existing_study, loadtest_study

    study = existing_study(study_id) if study_id else loadtest_study(n_items=items, hit_size=hit_size)
    client = WsgiClient(get_wsgi_application())
    rng = random.Random(0)
    for h in range(warmup):
        run_hit(client, study.pk, f"warm-{h}-{uuid.uuid4().hex[:6]}", rng, None)
    cpu = _cpu_per_request(client, study.pk, hits, rng, batch)
    single = _cpu_per_request(client, study.pk, hits, rng, 1) if batch > 1 else cpu
    profiles = {op: cProfile.Profile(time.process_time) for op in OPS}
    answers = 0
    for h in range(hits):
        answers += run_hit(client, study.pk, f"prof-{h}-{uuid.uuid4().hex[:6]}", rng, profiles, batch)
    per_hit = answers / hits
    answer_requests = hits * math.ceil(per_hit / batch)
    requests = {"start": hits, "answer": answer_requests, "complete": hits}
    parts, top, calls = {}, {}, {}
    for op, prof in profiles.items():
        stats = pstats.Stats(prof)
        calls[op] = stats.total_calls / requests[op]
        own = attribute(stats)
        total = sum(own.values()) or 1.0
        parts[op] = {part: 1000 * cpu[op] * s / total for part, s in own.items()}
        top[op] = _top_functions(stats, total, 1000 * cpu[op])
    mix = {"start": 1 / per_hit, "answer": answer_requests / answers, "complete": 1 / per_hit}
    single_mix = {**mix, "answer": 1.0}
    return {
        "batch": batch,
        "single_ms": 1000 * sum(single[op] * single_mix[op] for op in OPS),
        "single_answer_ms": 1000 * single["answer"],
        "cpu_ms": {op: 1000 * v for op, v in cpu.items()},
        "parts_ms": parts,
        "calls": calls,
        "top": top,
        "mix": mix,
        "per_hit": per_hit,
        "hits": hits,
        "study": str(study.pk),
        "n_items": study.items.count(),
    }


def _top_functions(stats: pstats.Stats, total: float, cpu_ms: float, n: int = 10) -> dict:
    """The view's functions with the most inclusive time, as (name, ms scaled like the parts), below DRF's
    dispatch (the handler and middleware wrap everything and would fill the list), and the time spent
    outside the view: WSGI handler, middleware, URL resolution, response close."""
    scale = cpu_ms / total
    inclusive = {}
    for (filename, line, name), (_, _, _, cumulative, _) in stats.stats.items():
        label = f"{filename.rsplit('site-packages/', 1)[-1].rsplit('platform/', 1)[-1]}:{line}({name})"
        inclusive[label] = scale * cumulative
    dispatch = max(
        v for k, v in inclusive.items() if k.startswith("rest_framework/views.py") and "dispatch" in k
    )
    handler = max(v for k, v in inclusive.items() if k.startswith("django/core/handlers/wsgi.py"))
    rows = sorted(((k, v) for k, v in inclusive.items() if v < 0.999 * dispatch), key=lambda r: -r[1])
    return {"outside_view_ms": handler - dispatch, "view_ms": dispatch, "functions": rows[:n]}


def report(measured: dict, *, command: str) -> str:
    """The "answer-profile" section of docs/benchmarks.md."""
    from devtools.reports import machine_line

    cpu, parts, mix, batch = measured["cpu_ms"], measured["parts_ms"], measured["mix"], measured["batch"]
    per_judgment = sum(cpu[op] * mix[op] for op in OPS)
    calls = measured["calls"]
    calls_per_judgment = sum(calls[op] * mix[op] for op in OPS)
    names = sorted(
        {p for op in OPS for p in parts[op]},
        key=lambda p: -sum(parts[op].get(p, 0) * mix[op] for op in OPS),
    )
    lines = [
        "## Where the answer path's CPU goes",
        "",
        f"Machine: {machine_line()}. Command: {command}. {measured['hits']} HITs of "
        f"{measured['per_hit']:.0f} trials each (a study of {measured['n_items']} items) go through the WSGI "
        "application in one process, as gunicorn hands it requests: middleware, URL resolver, DRF, the "
        "services, PostgreSQL and the throttles' Redis round trips, with `devtools.settings_loadtest` "
        "(DEBUG off). CPU per request is measured without the profiler; cProfile (CPU clock) then "
        "splits it into parts by the file each function lives in, a C built-in counting with its "
        "caller (devtools/profile_answer.py). Not here: gunicorn's own HTTP work and the kernel's "
        "socket time, which the load test's web column includes.",
        "",
        f"The answers go as the annotator page sends them, in batches (here of {batch}: what a paced "
        "annotator's page sends at the default ANSWER_FLUSH_MS of 2 s) to the batch endpoint. CPU per "
        f"request: start {cpu['start']:.2f} ms, answer batch {cpu['answer']:.2f} ms, completion "
        f"{cpu['complete']:.2f} ms; per judgment (1/{batch} of a batch plus 1/{measured['per_hit']:.0f} of "
        f"a start and of a completion): **{per_judgment:.2f} ms**. With one request per answer (`--batch "
        f"1`, the single-answer endpoint): {measured['single_answer_ms']:.2f} ms per answer, "
        f"{measured['single_ms']:.2f} ms per judgment. Python function calls per request, a count that "
        "other jobs on the machine cannot inflate: "
        f"start {calls['start']:,.0f}, answer batch {calls['answer']:,.0f}, completion "
        f"{calls['complete']:,.0f}; per judgment {calls_per_judgment:,.0f}.",
        "",
        f"| part | answer batch of {batch} (ms) | start (ms) | completion (ms) | per judgment (ms) | share |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in names:
        values = [parts[op].get(name, 0.0) for op in OPS]
        pj = sum(v * mix[op] for v, op in zip(values, OPS, strict=True))
        lines.append(
            f"| {name} | {values[1]:.3f} | {values[0]:.3f} | {values[2]:.3f} | {pj:.3f} | "
            f"{100 * pj / per_judgment:.0f} % |"
        )
    for op in ("answer", "start"):
        top = measured["top"][op]
        lines += [
            "",
            f"One {OP_NAMES[op]}: {top['outside_view_ms']:.2f} ms outside the view (WSGI handler, the "
            f"middleware chain, URL resolution, closing the response), {top['view_ms']:.2f} ms in DRF's "
            "dispatch (throttle, parsing, the view, rendering). Largest inclusive costs inside it (ms):",
            "",
        ]
        lines += [f"- `{label}`: {ms:.3f}" for label, ms in top["functions"]]
    return "\n".join(lines)
