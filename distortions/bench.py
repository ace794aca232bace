"""Benchmarks for the distortion engine (make bench). Results go into docs/benchmarks.md."""

from __future__ import annotations

import multiprocessing
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from distortions import registry
from distortions.contact import default_patch
from distortions.study import StudyBuilder, StudyConfig, build_study

BEGIN, END = "<!-- distortions:begin -->", "<!-- distortions:end -->"
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


def bench_cnn_pool(n_models: int = 16, seconds: float = 1.0) -> dict:
    """Train the default CPU pool from scratch in a temporary folder (all cores, one model per core),
    then time the cnn_autoencoder distortion on it."""
    from distortions.cnn.distortion import _EXTRA_DIRS, _index, add_pool_dir
    from distortions.cnn.trainer import Budget, train_pool

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        pool = train_pool(tmp, n_models=n_models, seed=0, device="cpu", progress=False)
        train_seconds = time.perf_counter() - start
        add_pool_dir(tmp)
        try:
            dist, patch, rng = registry.get("cnn_autoencoder")(), default_patch(), np.random.default_rng(0)
            rate = _rate(lambda: dist.apply(patch, dist.sample(rng)), seconds)
        finally:
            _EXTRA_DIRS.remove(Path(tmp).resolve())
            _index.cache_clear()
    budget = Budget()
    return {"n_models": len(pool["models"]), "seconds": train_seconds, "steps": budget.steps,
            "batch": budget.batch_size, "rate": rate}  # fmt: skip


def run_bench(*, seconds: float = 1.0, out: str | None = None, cnn: bool = True) -> str:
    patch = default_patch()
    rng = np.random.default_rng(0)
    rows = []
    for name in [n for n in registry.names() if registry.get(n).family != "cnn"]:
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
        BEGIN,
        "## Distortion engine",
        "",
        f"Machine: {machine_line()}. Command: `make bench` (`python -m distortions bench`). 64x64 patches;",
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
        f"Target: {TARGET_TRIPLETS_PER_S:,} traditional 2AFC triplets/s on this machine, compositions included: "
        + ("**met** in memory." if parallel >= TARGET_TRIPLETS_PER_S else "**not met**."),
        "What limits it: per-item Python overhead (record building, two sha256 per image) and the slowest ops ("
        + ", ".join(f"{n} {r:,.0f}/s" for n, _, r in slowest)
        + "); writing PNGs (zlib) costs a further share end to end.",
    ]
    if cnn:
        pool = bench_cnn_pool()
        lines += [
            "",
            f"CNN-autoencoder pool, default CPU budget ({pool['n_models']} models x {pool['steps']} steps, batch "
            f"{pool['batch']}, {cores} processes): **{pool['seconds'] / 60:.1f} min** to train from scratch on this "
            f"machine (`python -m distortions train-cnn-pool DIR`). Applying it (`cnn_autoencoder`, CPU, one thread, "
            f"deterministic): {pool['rate']:,.0f} items/s. GPU figures: this session had no GPU; none are reported.",
        ]
    lines.append(END)
    section = "\n".join(lines)
    if out:
        _replace_section(Path(out), section)
    return section


def _replace_section(path: Path, section: str) -> None:
    """Replace the block between the section's own first and last lines (its begin/end markers), or
    append it; other sections of the file are left alone."""
    begin, end = section.splitlines()[0], section.splitlines()[-1]
    text = path.read_text() if path.exists() else "# Benchmarks\n\nWritten by `make bench`; numbers are from the machine named in each section.\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        tail = rest.split(end, 1)[1]
        text = head + section + tail
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
