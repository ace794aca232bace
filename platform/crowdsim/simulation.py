"""Simulated annotators: a hidden "observer" model answers trials from the pixels it is shown.

Observer specs:
  - a baseline name from metric.baselines (``l2_lab``, ``dssim_lab``, ``psnr``, ...);
  - ``lpips:<net>:<weights>[:<heads>]`` with weights ``imagenet`` / ``random`` and heads ``official``,
    ``ones`` (unweighted), ``last`` (only the deepest layer counts) or ``sparse`` (a seeded random head on
    about 15 % of the channels). ``last`` has structure an untrained, unweighted head lacks (it disagrees
    with it on about 9 % of triplets), so learning from the crowd is measurable.

Decision model (Thurstone case V with Weber-like noise): the observer perceives d0 + e0 and d1 + e1 with
e ~ N(0, (noise * (d0 + d1) / 2)^2) and picks the smaller. JND: "same" when the perceived distance is
below `jnd_threshold` times the median distance it has seen. A worker lapses (answers at random) with
probability `lapse`, presses left with probability `left_bias` regardless, and a spammer always answers at
random.
"""

from __future__ import annotations

import http.client
import io
import json
import logging
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import urlparse

import numpy as np
import torch
from PIL import Image

from metric.baselines import BASELINES
from metric.data import to_tensor
from metric.errors import MetricError

logger = logging.getLogger(__name__)


class Observer:
    def __init__(self, spec: str = "l2_lab", *, seed: int = 0):
        self.spec = spec
        self.seed = seed
        self._seen: list[float] = []
        if spec in BASELINES:
            fn = BASELINES[spec]
            self._distance = lambda a, b: float(fn(to_tensor(a[None]), to_tensor(b[None])).flatten()[0])
            return
        parts = spec.split(":")
        if parts[0] != "lpips" or len(parts) not in (3, 4):
            raise MetricError(
                f"unknown observer {spec!r}: a baseline {sorted(BASELINES)} or lpips:<net>:<weights>[:heads]"
            )
        from metric.lpips import LPIPS

        heads = parts[3] if len(parts) == 4 else "official"
        model = LPIPS(
            net=parts[1],
            backbone_weights=parts[2],
            head_weights="official" if heads == "official" else "random",
            seed=seed,
            use_dropout=False,
            warn_official_heads=False,  # a hidden observer: official heads on any trunk, on purpose
        )
        if heads in ("ones", "sparse", "last"):
            w = torch.ones_like(model.heads.flat_weights())
            if heads == "last":
                w[: -model.backbone.spec.channels[-1]] = 0
            elif heads == "sparse":
                gen = torch.Generator().manual_seed(seed + 1)
                keep = torch.rand(w.shape, generator=gen) < 0.15
                w = keep.float() * torch.empty(w.shape).exponential_(1.0, generator=gen) * 4
            model.heads.set_flat_weights(w)
        elif heads != "official":
            raise MetricError(f"observer heads must be official, ones, last or sparse, got {heads!r}")
        self._model = model.eval()

        @torch.no_grad()
        def distance(a, b):
            return float(self._model(to_tensor(a[None]), to_tensor(b[None])).flatten()[0])

        self._distance = distance

    def distance(self, a: np.ndarray, b: np.ndarray) -> float:
        d = self._distance(a, b)
        self._seen.append(d)
        return d


@dataclass
class Persona:
    """One simulated worker's habits."""

    noise: float = 0.15
    lapse: float = 0.05
    left_bias: float = 0.0
    spammer: bool = False
    jnd_threshold: float = 0.35
    rt_ms: float = 1500.0


def decode_png(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()


def answer_2afc(observer: Observer, persona: Persona, rng: random.Random, left, ref, right) -> str:
    if persona.spammer or rng.random() < persona.lapse:
        return rng.choice(("left", "right"))
    if persona.left_bias and rng.random() < persona.left_bias:
        return "left"
    d_left, d_right = observer.distance(ref, left), observer.distance(ref, right)
    sigma = persona.noise * (d_left + d_right) / 2
    return "left" if d_left + rng.gauss(0, sigma) < d_right + rng.gauss(0, sigma) else "right"


def answer_jnd(observer: Observer, persona: Persona, rng: random.Random, first, second) -> str:
    if persona.spammer or rng.random() < persona.lapse:
        return rng.choice(("same", "different"))
    d = observer.distance(first, second)
    seen = [x for x in observer._seen if x > 0] or [1.0]
    threshold = persona.jnd_threshold * float(np.median(seen))
    return "same" if d + rng.gauss(0, persona.noise * max(d, threshold)) < threshold else "different"


# --- the HTTP driver ------------------------------------------------------------------------------------


# what sending on a kept-alive connection that the server has closed raises
STALE_CONNECTION = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


class HttpClient:
    """A keep-alive JSON client with the browser's retry rule: network errors, 5xx and 429 are retried
    with exponential backoff; other answers are returned."""

    def __init__(self, base_url: str, timeout: float = 30.0):
        parsed = urlparse(base_url)
        self.host, self.port = parsed.hostname, parsed.port or (443 if parsed.scheme == "https" else 80)
        self.https = parsed.scheme == "https"
        self.timeout = timeout
        self.conn = None
        self.retries = 0

    def _connection(self):
        if self.conn is None:
            cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
            self.conn = cls(self.host, self.port, timeout=self.timeout)
        return self.conn

    def request(self, method: str, path: str, body=None, *, attempts: int = 12, raw: bool = False):
        delay = 0.2
        stale_retry = True
        for attempt in range(attempts):
            reused = self.conn is not None
            try:
                conn = self._connection()
                headers = {"Accept": "application/json"}
                data = None
                if body is not None:
                    data = json.dumps(body).encode()
                    headers["Content-Type"] = "application/json"
                conn.request(method, path, body=data, headers=headers)
                resp = conn.getresponse()
                payload = resp.read()
                if resp.status < 500 and resp.status != 429:
                    if raw:
                        return resp.status, payload
                    return resp.status, (json.loads(payload) if payload else {})
            except (OSError, http.client.HTTPException) as exc:
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
                if reused and stale_retry and isinstance(exc, STALE_CONNECTION):
                    # the server closed the kept-alive connection while it was idle: reconnect at once, as
                    # a browser does, without counting a retry (once per request)
                    stale_retry = False
                    continue
            self.retries += 1
            if attempt + 1 < attempts:
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
        raise RuntimeError(f"{method} {path}: no answer after {attempts} attempts")

    def close(self):
        if self.conn is not None:
            self.conn.close()


@dataclass
class CrowdResult:
    workers: int = 0
    assignments: int = 0
    judgments: int = 0
    replays: int = 0
    retries: int = 0
    no_work: int = 0
    excluded: int = 0
    spammers: int = 0
    seconds: float = 0.0
    spammer_ids: list = field(default_factory=list)  # ids (as sent) of spammers who submitted a HIT


class _Tally:
    """The crowd's CrowdResult, updated by the worker threads under one lock."""

    def __init__(self):
        self.result = CrowdResult()
        self._lock = threading.Lock()

    def no_work(self) -> None:
        with self._lock:
            self.result.no_work += 1

    def submitted(self, n_judged: int, replays: int) -> None:
        """One HIT submitted with n_judged answers, ``replays`` of them re-sent."""
        with self._lock:
            self.result.assignments += 1
            self.result.judgments += n_judged
            self.result.replays += replays

    def worker_done(self, persona: Persona, worker_id: str, hits: int) -> None:
        with self._lock:
            self.result.workers += 1
            self.result.spammers += persona.spammer
            if persona.spammer and hits:
                self.result.spammer_ids.append(worker_id)

    def add_retries(self, retries: int) -> None:
        with self._lock:
            self.result.retries += retries


def _personas(
    n_workers: int, *, seed: int, spammers: float, noise: float, lapse: float, left_bias: float
) -> list[Persona]:
    """One persona per worker, drawn from the seed: whether it spams, and its typical response time."""
    rng_master = random.Random(seed)
    personas = []
    for _ in range(n_workers):
        spam = rng_master.random() < spammers
        personas.append(
            Persona(
                noise=noise,
                lapse=lapse,
                left_bias=left_bias,
                spammer=spam,
                rt_ms=rng_master.uniform(600, 2500),
            )
        )
    return personas


def _fetch_image(client: HttpClient, url: str) -> np.ndarray:
    # Each URL is one trial's slot (opaque, bound to the assignment): nothing to cache across trials.
    status, data = client.request("GET", url, raw=True)
    if status != 200:
        raise RuntimeError(f"GET {url}: {status}")
    return decode_png(data)


def _start_assignment(client: HttpClient, study_id: str, worker_id: str) -> dict | None:
    """The started assignment (token and trials), or None when the study has no work left."""
    status, data = client.request(
        "POST",
        f"/api/v1/studies/{study_id}/assignments/",
        {"platform": "simulated", "worker_id": worker_id, "consent": True},
    )
    if status == 409 and data.get("extra", {}).get("code") == "no_work":
        return None
    if status not in (200, 201):
        raise RuntimeError(f"start: {status} {data}")
    return data


def _answer_trial(
    client: HttpClient,
    token: str,
    trial: dict,
    *,
    obs: Observer,
    obs_lock: threading.Lock,
    persona: Persona,
    rng: random.Random,
    replay_rate: float,
    pace_s: float = 0.0,
) -> int:
    """Looks at the trial's images, answers as the persona would and sends the answer (twice now and
    then, as a flaky network would); returns how many sends were replays of a stored answer."""
    if pace_s:  # a paced crowd: this worker thinks 0.5-1.5 x pace_s before answering
        time.sleep(pace_s * rng.uniform(0.5, 1.5))
    imgs = {k: _fetch_image(client, v) for k, v in trial["images"].items()}
    with obs_lock:
        if "ref" in imgs:
            response = answer_2afc(obs, persona, rng, imgs["left"], imgs["ref"], imgs["right"])
        else:
            response = answer_jnd(obs, persona, rng, imgs["first"], imgs["second"])
    body = {
        "trial": trial["id"],
        "response": response,
        "idempotency_key": uuid.uuid4().hex,
        "rt_ms": max(150.0, rng.gauss(persona.rt_ms, persona.rt_ms / 4)),
        "durations": {"ref_ms": 1000, "gap_ms": 250, "distorted_ms": 1000},
        "display": {"refresh_hz": 60, "simulated": True},
    }
    replays = 0
    for _ in range(2 if rng.random() < replay_rate else 1):
        status, answer = client.request("POST", f"/api/v1/assignments/{token}/judgments/", body)
        if status not in (200, 201):
            raise RuntimeError(f"judgment: {status} {answer}")
        replays += status == 200
    return replays


def _complete_assignment(
    client: HttpClient,
    assignment: dict,
    *,
    obs: Observer,
    obs_lock: threading.Lock,
    persona: Persona,
    rng: random.Random,
    replay_rate: float,
    pace_s: float = 0.0,
) -> tuple[int, int]:
    """Answers every unanswered trial of a started assignment, then submits it; returns (judged, replays)."""
    token, n_judged, replays = assignment["token"], 0, 0
    for trial in assignment["trials"]:
        if trial["answered"]:
            continue
        replays += _answer_trial(
            client,
            token,
            trial,
            obs=obs,
            obs_lock=obs_lock,
            persona=persona,
            rng=rng,
            replay_rate=replay_rate,
            pace_s=pace_s,
        )
        n_judged += 1
    status, done = client.request("POST", f"/api/v1/assignments/{token}/submit/")
    if status != 200:
        raise RuntimeError(f"submit: {status} {done}")
    return n_judged, replays


def _take_hits(
    client: HttpClient,
    tally: _Tally,
    *,
    study_id: str,
    worker_id: str,
    max_hits: int,
    progress,
    obs: Observer,
    obs_lock: threading.Lock,
    persona: Persona,
    rng: random.Random,
    replay_rate: float,
    pace_s: float = 0.0,
) -> int:
    """One worker starts, answers and submits HITs until it has done ``max_hits`` or the study has no
    work left; returns how many it submitted."""
    hits = 0
    while hits < max_hits:
        assignment = _start_assignment(client, study_id, worker_id)
        if assignment is None:
            tally.no_work()
            break
        n_judged, replays = _complete_assignment(
            client,
            assignment,
            obs=obs,
            obs_lock=obs_lock,
            persona=persona,
            rng=rng,
            replay_rate=replay_rate,
            pace_s=pace_s,
        )
        hits += 1
        tally.submitted(n_judged, replays)
        if progress:
            progress(tally.result)
    return hits


def _run_threads(work, concurrency: int) -> None:
    """Runs ``work(t)`` on ``concurrency`` threads; the first error any of them raised is raised here."""
    errors: list = []

    def guarded(t):
        try:
            work(t)
        except Exception as exc:  # surfaced after join
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(t,), daemon=True) for t in range(max(1, concurrency))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def run_crowd(
    *,
    base_url: str,
    study_id: str,
    n_workers: int = 50,
    spammers: float = 0.1,
    lapse: float = 0.05,
    left_bias: float = 0.0,
    noise: float = 0.15,
    observer: str = "l2_lab",
    seed: int = 0,
    concurrency: int = 4,
    replay_rate: float = 0.05,
    max_hits: int = 3,
    progress=None,
    pace_s: float = 0.0,
) -> CrowdResult:
    """Simulated workers drive the annotator API as browsers do: start, fetch images, answer each trial with
    an idempotency key (re-sending some answers, as a flaky network would), submit; until no work is left.
    `pace_s`: each worker waits 0.5-1.5 x pace_s before each answer (0: back to back)."""
    obs = Observer(observer, seed=seed)
    obs_lock = threading.Lock()
    tally = _Tally()
    queue = list(range(n_workers))
    queue_lock = threading.Lock()
    personas = _personas(
        n_workers, seed=seed, spammers=spammers, noise=noise, lapse=lapse, left_bias=left_bias
    )
    started = time.perf_counter()

    def work(thread: int) -> None:
        client = HttpClient(base_url)
        try:
            while True:
                with queue_lock:
                    if not queue:
                        return
                    w = queue.pop(0)
                persona, worker_id = personas[w], f"sim-{seed}-{w}"
                hits = _take_hits(
                    client,
                    tally,
                    study_id=study_id,
                    worker_id=worker_id,
                    max_hits=max_hits,
                    progress=progress,
                    obs=obs,
                    obs_lock=obs_lock,
                    persona=persona,
                    rng=random.Random(seed * 100_003 + w),
                    replay_rate=replay_rate,
                    pace_s=pace_s,
                )
                tally.worker_done(persona, worker_id, hits)
        finally:
            tally.add_retries(client.retries)
            client.close()

    _run_threads(work, concurrency)
    tally.result.seconds = time.perf_counter() - started
    return tally.result
