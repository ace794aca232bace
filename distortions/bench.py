"""Benchmarks for the distortion engine: `python -m distortions bench` prints the section as Markdown;
`make bench` writes it into docs/benchmarks.md (devtools.bench_distortions)."""

from __future__ import annotations

import multiprocessing
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from distortions import registry
from distortions.contact_sheet import default_patch
from distortions.dataset import StudyBuilder, StudyConfig, build_study

TARGET_TRIPLETS_PER_S = 1000


def _rate(fn, seconds: float) -> float:
    fn()  # warm-up
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        n += 1
    return n / (time.perf_counter() - start)


def _triplets_in_memory(args) -> int:
    seconds, offset = args
    builder = StudyBuilder(StudyConfig.from_dict({"kind": "2afc", "seed": 7, "n_items": 10**6}))
    builder.source.images  # noqa: B018
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        builder.build_item(offset + 100 + n)
        n += 1
    return n


def machine_line() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, numpy {np.__version__}"


def bench_cnn_pool(n_models: int = 16, seconds: float = 1.0, feature_distance=None) -> dict:
    """Train the default CPU pool from scratch in a temporary folder (all cores, one model per core),
    with the given feature-loss network (see distortions.cnn.trainer), then time the cnn_autoencoder
    distortion on it."""
    from distortions.cnn.distortion import _EXTRA_DIRS, _index, add_pool_dir
    from distortions.cnn.trainer import Budget, train_pool

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        pool = train_pool(
            tmp, n_models=n_models, seed=0, device="cpu", progress=False, feature_distance=feature_distance
        )
        train_seconds = time.perf_counter() - start
        add_pool_dir(tmp)
        try:
            dist, patch, rng = registry.get("cnn_autoencoder")(), default_patch(), np.random.default_rng(0)
            rate = _rate(lambda: dist.apply(patch, dist.sample(rng)), seconds)
        finally:
            _EXTRA_DIRS.remove(Path(tmp).resolve())
            _index.cache_clear()
    budget = Budget()
    return {
        "n_models": len(pool["models"]),
        "seconds": train_seconds,
        "steps": budget.steps,
        "batch": budget.batch_size,
        "rate": rate,
    }


def run_bench(*, seconds: float = 1.0, cnn: bool = True, feature_distance=None) -> str:
    """The "Distortion engine" section of the benchmark report, as Markdown (without its markers).
    `feature_distance` is the CNN pool's feature-loss network (None: L1 + adversarial only)."""
    patch = default_patch()
    rng = np.random.default_rng(0)
    rows = []
    for name in [n for n in registry.names() if not registry.get(n).opt_in]:
        dist = registry.get(name)()
        rate = _rate(lambda d=dist: d.apply(patch, d.sample(rng)), seconds)
        rows.append((name, dist.family, rate))
    single = _triplets_in_memory((seconds * 2, 0)) / (seconds * 2)
    cores = os.cpu_count() or 1
    with multiprocessing.get_context("fork").Pool(cores) as pool:
        start = time.perf_counter()
        counts = pool.map(_triplets_in_memory, [(seconds * 2, k * 10**5) for k in range(cores)])
        parallel = sum(counts) / (time.perf_counter() - start)
    with tempfile.TemporaryDirectory() as tmp:
        n = max(200, int(parallel * 2))
        start = time.perf_counter()
        build_study({"kind": "2afc", "seed": 7, "n_items": n}, tmp, progress=False)
        built = n / (time.perf_counter() - start)
    slowest = sorted(rows, key=lambda r: r[2])[:3]
    lines = [
        "## Distortion engine",
        "",
        f"Machine: {machine_line()}. Command: `make bench` (`manage.py bench_distortions`; "
        "`python -m distortions bench` prints the same section). 64x64 patches;",
        "each rate is sample + apply on one core, uint8 in and out.",
        "",
        "| distortion | family | items/s (1 core) |",
        "|---|---|---:|",
        *[f"| {n} | {f} | {r:,.0f} |" for n, f, r in rows],
        "",
        "| 2AFC triplets (patch crop, two chains with 30% compositions, records) | triplets/s |",
        "|---|---:|",
        f"| in memory, 1 core | {single:,.0f} |",
        f"| in memory, {cores} processes | {parallel:,.0f} |",
        f"| `build_study` end to end ({cores} processes, PNG files + manifest) | {built:,.0f} |",
        "",
        f"Target: {TARGET_TRIPLETS_PER_S:,} traditional 2AFC triplets/s on this machine, "
        "compositions included: "
        + ("**met** in memory." if parallel >= TARGET_TRIPLETS_PER_S else "**not met**."),
        "What limits it: per-item Python overhead (record building, two sha256 per image) and the "
        "slowest ops ("
        + ", ".join(f"{n} {r:,.0f}/s" for n, _, r in slowest)
        + "); writing PNGs (zlib) costs a further share end to end.",
    ]
    if cnn:
        pool = bench_cnn_pool(feature_distance=feature_distance)
        feature = "none"
        if feature_distance is not None:
            feature = f"`{feature_distance.__module__}.{feature_distance.__name__}`"
        lines += [
            "",
            f"CNN-autoencoder pool, default CPU budget ({pool['n_models']} models x {pool['steps']} steps, "
            f"batch {pool['batch']}, {cores} processes, feature loss {feature}): "
            f"**{pool['seconds'] / 60:.1f} min** to train from scratch on this machine "
            "(`python -m distortions train-cnn-pool DIR`). Applying it "
            f"(`cnn_autoencoder`, CPU, one thread, deterministic): {pool['rate']:,.0f} items/s. "
            "GPU figures: this session had no GPU; none are reported.",
        ]
    return "\n".join(lines)
