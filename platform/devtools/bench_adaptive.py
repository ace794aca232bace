"""Science benchmark (`make bench-adaptive`, `manage.py bench_adaptive`): do adaptive samplers
(metric.sampling) reach uniform sampling's results with fewer judgments? (issue 20, docs/sampling.md)

A simulated study, replayed once per sampler on the same candidates and the same crowd:

- **Candidates**: 2AFC triplets from the distortion engine over the scikit-image photos, split by the
  engine into a train pool and a val split. Two designs: ``pairs`` (the default study: every triplet has its
  own reference) and ``groups`` (``groups: {"distortions": 4}``: six triplets per reference, the pairs of
  four distorted versions, the design ASAP-style ``info_gain`` needs).
- **Crowds**: `crowdsim.simulation.Observer` distances (``l2_lab``, ``ms_ssim``, the LPIPS variant
  ``lpips:alex:random:last``) and one observer no committee member shares, ``l2_lab`` with every blurred
  patch looking four times as far (``blur4``); votes from `crowdsim.simulation.answer_2afc` (Persona
  defaults: Thurstone noise 0.15 of the mean distance, 5 % lapses), a fresh vote each time.
- **Collection**: rounds of ``batch`` train items with 2 votes each, drawn by `metric.sampling.draw` from the
  candidates not yet asked (a 20 % uniform stream), scored by the sampler with what the round before
  learnt. The val split is always uniform, with 5 votes per item.
- **Learner**: lin heads (the reference recipe on the fast path, lr 1e-2, about 300 steps per retrain) on
  a seeded random AlexNet trunk whose features are computed once (no download); ``uncertainty`` adds two
  bootstrap heads.
- **Committee** (``disagreement``): ``l2_lab``, ``dssim_lab``, the unweighted LPIPS of the same trunk, and
  the current head once there is one.
- **Figures**: held-out 2AFC of the head on the val split after each round; and metric-ranking
  resolution: the paired differences in 2AFC between ``l2_lab``, ``dssim_lab`` and unweighted LPIPS over the
  whole pool, estimated from the judgments collected so far with the Des Raj estimator (the propensities
  undo the sampler's bias) and a bootstrap over the served items; the ranking is resolved once every pair's
  95 % interval excludes 0.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import random
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch

from devtools.reports import machine_line, write_section

SECTION = "adaptive-sampling"
CROWDS = {
    "l2_lab": "l2_lab",
    "ms_ssim": "ms_ssim",
    "lpips_last": "lpips:alex:random:last",
    "blur4": "l2_lab, blur x4",
}
RANKED = ("l2_lab", "dssim_lab", "lpips_unweighted")
DESIGNS = {
    "pairs": {"groups": None, "samplers": ("uniform", "disagreement", "uncertainty")},
    "groups": {"groups": 4, "samplers": ("uniform", "info_gain", "disagreement")},
}
UNIFORM_SHARE = 0.2
VOTES_TRAIN, VOTES_VAL = 2, 5
BLUR_FACTOR = 4.0
LR = 1e-2


@dataclass
class Pool:
    """A design's candidates with everything the samplers and the learner need, computed once."""

    split: np.ndarray  # True: the train pool (candidates), False: val
    blurred: np.ndarray  # [N, 2]: whether p0 / p1 went through a blur-family op
    group: np.ndarray  # group id per item (-1 without groups)
    members: np.ndarray  # [N, 2]: the group members p0 and p1 are (0 without groups)
    s0: np.ndarray  # lin-head statistics of (ref, p0), N x sum(C)
    s1: np.ndarray
    w0: torch.Tensor  # the heads' seeded initial weights
    distances: dict  # metric name -> (d0, d1): the committee and the ranked metrics
    observers: dict  # crowd -> (d0, d1): the hidden observers' distances
    build_seconds: float


def build_pool(n_items: int, *, groups: int | None, seed: int, crowds: dict) -> Pool:
    """Build a design's triplets with the engine, their trunk statistics and every metric's distances."""
    from crowdsim.simulation import Observer
    from devtools.bench_kmeans import observer_distances
    from distortions.dataset import StudyBuilder, StudyConfig
    from distortions.registry import get
    from metric.baselines import BASELINES
    from metric.data import TwoAFCData
    from metric.evaluate import baseline_2afc_distances
    from metric.train import TrainConfig, build_model, extract_stats

    start = time.perf_counter()
    config = {"kind": "2afc", "seed": seed, "n_items": n_items, "sentinels": {"n": 0}, "practice": {"n": 0}}
    if groups:
        config["groups"] = {"distortions": groups}
    builder = StudyBuilder(StudyConfig.from_dict(config))
    entries = [builder.build_item(i) for i in range(n_items)]
    ref, p0, p1 = (np.stack([e["_images"][k] for e in entries]) for k in ("ref", "p0", "p1"))
    blurred = np.array(
        [
            [any(get(op["name"]).family == "blur" for op in e["records"][s]["ops"]) for s in ("p0", "p1")]
            for e in entries
        ]
    )
    group = np.array([e["group"]["id"] if groups else -1 for e in entries])
    members = np.array([e["group"]["members"] if groups else [0, 0] for e in entries])
    data = TwoAFCData(ref, p0, p1, np.zeros(n_items), ["traditional"] * n_items, np.ones(n_items))
    model = build_model(TrainConfig(backbone_weights="random", seed=0))
    s0, s1 = extract_stats(model, data)
    distances = {name: baseline_2afc_distances(BASELINES[name], data) for name in ("l2_lab", "dssim_lab")}
    distances["lpips_unweighted"] = (s0.sum(axis=1).astype(np.float64), s1.sum(axis=1).astype(np.float64))
    observers = {}
    for crowd, spec in crowds.items():
        if crowd == "blur4":
            d0, d1 = distances["l2_lab"]
            observers[crowd] = (
                d0 * np.where(blurred[:, 0], BLUR_FACTOR, 1),
                d1 * np.where(blurred[:, 1], BLUR_FACTOR, 1),
            )
        elif spec in distances:
            observers[crowd] = distances[spec]
        else:
            Observer(spec)  # fails early and clearly on a bad spec
            observers[crowd] = observer_distances(spec, data)
    return Pool(
        split=np.array([e["split"] == "train" for e in entries]),
        blurred=blurred,
        group=group,
        members=members,
        s0=s0,
        s1=s1,
        w0=model.heads.flat_weights().detach().clone(),
        distances=distances,
        observers=observers,
        build_seconds=time.perf_counter() - start,
    )


class _Looked:
    """Hands precomputed observer distances to `answer_2afc` by (side, item) key."""

    def __init__(self, d0: np.ndarray, d1: np.ndarray):
        self.d = {"p0": d0, "p1": d1}

    def distance(self, ref, other) -> float:
        return float(self.d[other[0]][other[1]])


def crowd_votes(d0: np.ndarray, d1: np.ndarray, n_votes: int, *, seed: int) -> np.ndarray:
    """[N, n_votes] of 1 (p1 judged closer) or 0: each a fresh `answer_2afc` by a default Persona, with
    p0 shown left or right at random. A sampler that asks item i for its j-th vote gets votes[i, j]."""
    from crowdsim.simulation import Persona, answer_2afc

    looked, persona, rng = _Looked(d0, d1), Persona(), random.Random(seed)
    out = np.zeros((len(d0), n_votes), dtype=np.int64)
    for i in range(len(d0)):
        for j in range(n_votes):
            left, right = (("p0", i), ("p1", i)) if rng.random() < 0.5 else (("p1", i), ("p0", i))
            chosen = left if answer_2afc(looked, persona, rng, left, i, right) == "left" else right
            out[i, j] = chosen[0] == "p1"
    return out


def _train(pool: Pool, idx: np.ndarray, p: np.ndarray, *, seed: int, steps: int):
    """A lin head (flat weights w, ranking net G) trained on the statistics of items idx with labels p: the
    reference recipe at lr 1e-2 for about `steps` optimiser steps, half of them decaying, whatever the
    number of items (1e-4 barely moves the heads on a few hundred triplets; a fixed epoch count would
    train the first rounds' heads far less than the last ones')."""
    from metric.train import TrainConfig, train_lin_fast

    epochs = max(1, math.ceil(steps / math.ceil(len(idx) / 50) / 2))
    cfg = TrainConfig(lr=LR, epochs=epochs, epochs_decay=epochs, seed=seed)
    w, rank, _ = train_lin_fast(pool.s0[idx], pool.s1[idx], p, cfg, w_init=pool.w0)
    return w.numpy().astype(np.float64), rank


@torch.no_grad()
def _predict(pool: Pool, head, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A head's d0, d1 and predicted P(p1 judged closer) on items idx."""
    w, rank = head
    d0, d1 = pool.s0[idx] @ w, pool.s1[idx] @ w
    p = rank(torch.from_numpy(d0).float(), torch.from_numpy(d1).float()).numpy().astype(np.float64)
    return d0, d1, p


def _scores(
    sampler: str, pool: Pool, cand: np.ndarray, heads: list, k: np.ndarray, n: np.ndarray
) -> np.ndarray:
    """The sampler's score of every train candidate (cand: their item indices)."""
    from metric import sampling

    if sampler == "uniform":
        return np.zeros(len(cand))
    if sampler == "disagreement":
        members = [(pool.distances[m][0][cand], pool.distances[m][1][cand]) for m in RANKED]
        members += [_predict(pool, h, cand)[:2] for h in heads[:1]]
        return sampling.disagreement_scores(
            np.stack([a for a, _ in members]), np.stack([b for _, b in members])
        )
    if sampler == "uncertainty":
        if not heads:
            return np.zeros(len(cand))
        return sampling.uncertainty_scores(np.stack([_predict(pool, h, cand)[2] for h in heads]))
    if sampler == "info_gain":
        a, b = pool.members[cand, 0], pool.members[cand, 1]
        return sampling.info_gain_scores(pool.group[cand], a, b, k, n)
    raise ValueError(f"no scorer for {sampler!r}")


def _ranking(
    pool: Pool, order: np.ndarray, props: np.ndarray, p: np.ndarray, n_pool: int, *, n_boot: int, rng
):
    """Per pair of ranked metrics: the Des Raj estimate of their 2AFC difference over the whole train pool
    from the served items (in draw order) and a 95 % bootstrap interval over those items."""
    from metric.sampling import des_raj_terms
    from metric.scoring import two_afc_per_item

    agree = {m: two_afc_per_item(pool.distances[m][0][order], pool.distances[m][1][order], p) for m in RANKED}
    out = {}
    boot = rng.integers(0, len(order), (n_boot, len(order)))
    for x, y in itertools.combinations(RANKED, 2):
        diff = agree[x] - agree[y]
        terms = des_raj_terms(diff, props, n_pool)
        est = float(terms.mean())
        lo, hi = np.quantile(terms[boot].mean(axis=1), [0.025, 0.975])
        out[f"{x} - {y}"] = {"diff": est, "ci": [float(lo), float(hi)], "resolved": bool(lo > 0 or hi < 0)}
    return out


def simulate(
    pool: Pool,
    crowd: str,
    sampler: str,
    *,
    seed: int,
    rounds: int,
    batch: int,
    steps: int,
    n_boot: int,
) -> list[dict]:
    """One collection run: per round, the judgments spent so far, the head's held-out 2AFC (and its per-item
    agreement on val) and the ranking estimates."""
    from metric import sampling
    from metric.scoring import two_afc_per_item

    train, val = np.flatnonzero(pool.split), np.flatnonzero(~pool.split)
    d0, d1 = pool.observers[crowd]
    votes = crowd_votes(d0, d1, VOTES_VAL, seed=seed)
    val_p = votes[val].mean(axis=1)
    rng = np.random.default_rng([seed, 1])
    boot_rng = np.random.default_rng([seed, 2])
    k, n = np.zeros(len(train)), np.zeros(len(train))
    order, props, heads, rows = [], [], [], []
    for r in range(rounds):
        scores = _scores(sampler, pool, train, heads, k, n)
        share = 1.0 if sampler == "uniform" or (sampler == "uncertainty" and not heads) else UNIFORM_SHARE
        picks, q = sampling.draw(scores, batch, uniform_share=share, rng=rng, eligible=n == 0)
        k[picks], n[picks] = votes[train[picks], :VOTES_TRAIN].sum(axis=1), VOTES_TRAIN
        order += picks.tolist()
        props += q.tolist()
        asked = np.asarray(order)
        p = k[asked] / n[asked]
        heads = [_train(pool, train[asked], p, seed=seed, steps=steps)]
        if sampler == "uncertainty":  # a bootstrap ensemble: each head on a resample of the asked items
            for b in range(2):
                res = np.random.default_rng([seed, 3, r, b]).integers(0, len(asked), len(asked))
                heads.append(_train(pool, train[asked[res]], p[res], seed=seed + 1 + b, steps=steps))
        h0, h1, _ = _predict(pool, heads[0], val)
        per_item = two_afc_per_item(h0, h1, val_p)
        rows.append(
            {
                "judgments": int(n.sum()),
                "val_2afc": float(per_item.mean()),
                "val_per_item": per_item,
                "ranking": _ranking(
                    pool, train[asked], np.asarray(props), p, len(train), n_boot=n_boot, rng=boot_rng
                ),
            }
        )
    return rows


_POOL: Pool | None = None


def _init_worker(pool: Pool) -> None:
    global _POOL
    _POOL = pool
    torch.set_num_threads(1)


def _simulate_task(task: tuple) -> list[dict]:
    crowd, sampler, seed, kw = task
    assert _POOL is not None
    return simulate(_POOL, crowd, sampler, seed=seed, **kw)


def run_bench(
    *,
    n_items: int = 2500,
    rounds: int = 8,
    batch: int = 100,
    seeds: tuple[int, ...] = (0, 1, 2),
    steps: int = 300,
    n_boot: int = 500,
    crowds: dict | None = None,
    designs: dict | None = None,
    data_seed: int = 5,
    jobs: int | None = None,
) -> dict:
    """Every (design, crowd, sampler, seed) run, `jobs` processes at a time (spawned, one torch thread
    each); returns the curves and the verdicts."""
    crowds = crowds or CROWDS
    designs = designs or DESIGNS
    # one torch thread per process: the heads are tiny (a few thousand weights), and on a shared machine
    # torch's thread pool makes each optimiser step an order of magnitude slower instead of faster
    jobs = jobs or min(2, os.cpu_count() or 1)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    result: dict = {
        "n_items": n_items,
        "rounds": rounds,
        "batch": batch,
        "seeds": list(seeds),
        "steps": steps,
        "crowds": dict(crowds),
        "uniform_share": UNIFORM_SHARE,
        "votes": {"train": VOTES_TRAIN, "val": VOTES_VAL},
        "jobs": jobs,
        "designs": {},
    }
    for design, spec in designs.items():
        pool = build_pool(n_items, groups=spec["groups"], seed=data_seed, crowds=crowds)
        entry: dict = {
            "groups": spec["groups"],
            "n_train": int(pool.split.sum()),
            "n_val": int((~pool.split).sum()),
            "build_seconds": pool.build_seconds,
            "crowds": {},
        }
        tasks = [(c, name, s) for c in crowds for name in spec["samplers"] for s in seeds]
        kw = {"rounds": rounds, "batch": batch, "steps": steps, "n_boot": n_boot}
        with ProcessPoolExecutor(
            jobs, mp_context=get_context("spawn"), initializer=_init_worker, initargs=(pool,)
        ) as ex:
            done = dict(zip(tasks, ex.map(_simulate_task, [(*t, kw) for t in tasks]), strict=True))
        for crowd in crowds:
            runs = {name: [done[crowd, name, s] for s in seeds] for name in spec["samplers"]}
            entry["crowds"][crowd] = summarise(runs, n_boot=n_boot)
        result["designs"][design] = entry
    result["seconds"] = time.perf_counter() - t0
    if hasattr(os, "getloadavg"):
        result["load_average_end"] = os.getloadavg()[0]
    return result


def _mean_ci(values: np.ndarray) -> tuple[float, float, float]:
    """Mean over seeds with a 95 % t interval (the seeds are the replicates)."""
    from scipy import stats

    values = np.asarray(values, dtype=np.float64)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, mean, mean
    half = float(stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values)))
    return mean, mean - half, mean + half


def summarise(runs: dict, *, n_boot: int) -> dict:
    """Per sampler: the held-out 2AFC curve (mean and CI over seeds), the judgments at which it first
    reaches uniform's full-budget 2AFC, the paired difference to uniform's full budget at half the budget
    (bootstrap over val items of the seed-averaged per-item difference), and the ranking resolution."""
    from metric.scoring import bootstrap_ci

    budgets = [row["judgments"] for row in runs["uniform"][0]]
    full, half = len(budgets) - 1, len(budgets) // 2 - 1
    uniform_full = np.mean([run[full]["val_2afc"] for run in runs["uniform"]])
    uniform_items = np.mean([run[full]["val_per_item"] for run in runs["uniform"]], axis=0)
    out = {"budgets": budgets, "samplers": {}}
    for sampler, seed_runs in runs.items():
        curve = [_mean_ci([run[r]["val_2afc"] for run in seed_runs]) for r in range(len(budgets))]
        reach = next((budgets[r] for r, (m, _, _) in enumerate(curve) if m >= uniform_full - 1e-12), None)
        diff = np.mean([run[half]["val_per_item"] for run in seed_runs], axis=0) - uniform_items
        lo, hi = bootstrap_ci(lambda idx, d=diff: d[idx].mean(), len(diff), n_boot=n_boot)
        resolved = [
            [all(v["resolved"] for v in run[r]["ranking"].values()) for r in range(len(budgets))]
            for run in seed_runs
        ]
        to_resolve = [next((budgets[r] for r, ok in enumerate(res) if ok), None) for res in resolved]
        pairs = [
            np.mean([np.mean([v["resolved"] for v in run[r]["ranking"].values()]) for run in seed_runs])
            for r in range(len(budgets))
        ]
        last = {
            pair: _mean_ci([run[full]["ranking"][pair]["diff"] for run in seed_runs])
            for pair in seed_runs[0][full]["ranking"]
        }
        out["samplers"][sampler] = {
            "val_2afc": curve,
            "reaches_uniform_full_at": reach,
            "half_minus_uniform_full": {"diff": float(diff.mean()), "ci": [lo, hi]},
            "budget_to_resolve": to_resolve,
            "pairs_resolved": [float(x) for x in pairs],
            "ranking_full": last,
        }
    return out


def _fmt_budget(b) -> str:
    return "not within the budget" if b is None else f"{b:,}"


def render(result: dict, *, plot: str | None = None) -> str:
    """The report section (Markdown)."""
    seeds = ", ".join(map(str, result["seeds"]))
    lines = [
        "## Adaptive sampling: held-out 2AFC and metric-ranking resolution against judgments spent",
        "",
        f"Machine: {machine_line()}, torch {torch.__version__}, {result['jobs']} processes of one thread. "
        "Command: `make bench-adaptive` (`python manage.py bench_adaptive`). "
        f"Whole run: {result['seconds']:.0f} s" + _load_note(result) + ".",
        "",
        f"Each design is built once by the distortion engine ({result['n_items']:,} triplets, the "
        f"engine's train/val split); each sampler collects {result['rounds']} rounds of {result['batch']} "
        f"train items with {result['votes']['train']} votes each (uniform share "
        f"{result['uniform_share']:.0%} for the adaptive ones), and a lin head (random AlexNet trunk, "
        f"{_recipe(result)}) is retrained after each round. The val split is uniform with "
        f"{result['votes']['val']} votes per item. Seeds {seeds} (the crowd's votes, the draws and the "
        "head's initialisation); 2AFC in percent, means over seeds with 95 % t intervals. See "
        "devtools/bench_adaptive.py and docs/sampling.md for the set-up.",
    ]
    if plot:
        lines += ["", f"![Learning curves per sampler]({plot})"]
    for design, entry in result["designs"].items():
        lines += [
            "",
            f"### Design `{design}`"
            + (f" (groups of {entry['groups']} distorted versions per reference)" if entry["groups"] else ""),
            "",
            f"{entry['n_train']:,} train candidates, {entry['n_val']:,} val items (built and featurised in "
            f"{entry['build_seconds']:.0f} s).",
            "",
            "| crowd | sampler | 2AFC at half budget | 2AFC at full budget | reaches uniform's full-budget "
            "2AFC at | half budget minus uniform full (paired CI) | ranking resolved at (per seed) |",
            "|---|---|---:|---:|---:|---:|---|",
        ]
        for crowd, summary in entry["crowds"].items():
            budgets = summary["budgets"]
            half = len(budgets) // 2 - 1
            for sampler, s in summary["samplers"].items():
                h, f = s["val_2afc"][half], s["val_2afc"][-1]
                d = s["half_minus_uniform_full"]
                lines.append(
                    f"| {crowd} | {sampler} | {_ci(h)} @ {budgets[half]:,} | {_ci(f)} @ {budgets[-1]:,} | "
                    f"{_fmt_budget(s['reaches_uniform_full_at'])} | {d['diff'] * 100:+.1f} "
                    f"[{d['ci'][0] * 100:+.1f}, {d['ci'][1] * 100:+.1f}] | "
                    + ", ".join("–" if b is None else f"{b:,}" for b in s["budget_to_resolve"])
                    + " |"
                )
        lines += ["", *_verdicts(entry)]
    return "\n".join(lines)


def _recipe(result: dict) -> str:
    return f"reference loss and clamping on the fast path, lr {LR:g}, about {result['steps']} steps"


def _ci(entry) -> str:
    m, lo, hi = entry
    return f"{m * 100:.1f} [{lo * 100:.1f}, {hi * 100:.1f}]"


def _verdicts(entry: dict) -> list[str]:
    """One line per crowd: which sampler met the issue's two goals, in words."""
    out = []
    for crowd, summary in entry["crowds"].items():
        budgets = summary["budgets"]
        half = budgets[len(budgets) // 2 - 1]
        met_2afc = [
            name
            for name, s in summary["samplers"].items()
            if name != "uniform"
            and s["reaches_uniform_full_at"] is not None
            and s["reaches_uniform_full_at"] <= half
        ]
        uniform_res = summary["samplers"]["uniform"]["budget_to_resolve"]
        met_rank = []
        for name, s in summary["samplers"].items():
            if name == "uniform":
                continue
            pairs = [(b, u) for b, u in zip(s["budget_to_resolve"], uniform_res, strict=True)]
            ok = [b is not None and (u is None or b <= u / 2) for b, u in pairs]
            if sum(ok) > len(ok) / 2:
                met_rank.append(name)
        helped = []
        for name in met_2afc:
            d = summary["samplers"][name]["half_minus_uniform_full"]
            helped.append(
                f"{name} ({d['diff'] * 100:+.1f} [{d['ci'][0] * 100:+.1f}, {d['ci'][1] * 100:+.1f}])"
            )
        out.append(
            f"- `{crowd}`: on the mean over seeds, uniform's full-budget 2AFC is reached with at most half "
            f"the judgments by {', '.join(helped) or 'no sampler'} (half budget minus uniform's full budget, "
            "paired CI: an interval that includes 0 means within noise); the ranking is resolved with at "
            f"most half of uniform's judgments on most seeds by {', '.join(met_rank) or 'no sampler'}"
            + (
                " (uniform did not resolve it within the budget on any seed)"
                if all(u is None for u in uniform_res)
                else ""
            )
            + "."
        )
    return out


def _load_note(result: dict) -> str:
    load = result.get("load_average_end")
    if load is not None and load > result["jobs"] + 0.5:
        return (
            f"; 1-minute load average {load:.1f} at the end on {os.cpu_count()} cores: other work shared "
            "them, so the seconds are no speed figure"
        )
    return ""


def plot_svg(result: dict) -> str:
    """The learning curves as one SVG: per design and crowd, held-out 2AFC and the share of resolved metric
    pairs against judgments, one line per sampler (dashboard.charts.line_chart panels stacked)."""
    from dashboard.charts import PALETTE, line_chart

    colors = {
        "uniform": PALETTE[7],
        "disagreement": PALETTE[1],
        "uncertainty": PALETTE[2],
        "info_gain": PALETTE[3],
    }
    panels = []
    for design, entry in result["designs"].items():
        for crowd, summary in entry["crowds"].items():
            budgets = summary["budgets"]
            acc = {
                s: list(zip(budgets, [c[0] for c in v["val_2afc"]], strict=True))
                for s, v in summary["samplers"].items()
            }
            res = {
                s: list(zip(budgets, v["pairs_resolved"], strict=True))
                for s, v in summary["samplers"].items()
            }
            panels.append(
                line_chart(
                    acc,
                    title=f"{design} / {crowd}",
                    x_label="judgments",
                    y_label="held-out 2AFC",
                    colors=colors,
                )
            )
            panels.append(
                line_chart(
                    res,
                    title=f"{design} / {crowd}",
                    x_label="judgments",
                    y_label="metric pairs resolved",
                    colors=colors,
                )
            )
    width, y, body = 1540, 0, []
    for i, svg in enumerate(panels):
        height = int(svg.split('height="', 1)[1].split('"', 1)[0])
        x = 0 if i % 2 == 0 else 770
        body.append(svg.replace("<svg ", f'<svg x="{x}" y="{y + 20}" ', 1))
        if i % 2 == 0:
            title = _panel_title(result, i // 2)
            body.append(f'<text x="4" y="{y + 14}" font-weight="bold">{title}</text>')
        else:
            y += height + 28
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {y}" width="{width}" height="{y}" '
        f'font-family="system-ui, sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/>'
        + "".join(body)
        + "</svg>\n"
    )


def _panel_title(result: dict, index: int) -> str:
    pairs = [(d, c) for d, e in result["designs"].items() for c in e["crowds"]]
    design, crowd = pairs[index]
    return f"design {design}, crowd {crowd} ({result['crowds'][crowd]}): mean over seeds {result['seeds']}"


def _json_ready(obj):
    if isinstance(obj, np.ndarray):
        return None  # per-item arrays stay out of the raw file
    if isinstance(obj, dict):
        return {k: _json_ready(v) for k, v in obj.items() if not isinstance(v, np.ndarray)}
    if isinstance(obj, list | tuple):
        return [_json_ready(v) for v in obj]
    return obj


def run(*, out: str | None = None, plot: str | None = None, quick: bool = False, **kwargs) -> str:
    """Run the benchmark (``quick``: a small pool, 2 seeds, one crowd), return the section and, with ``out``,
    write it (section "adaptive-sampling"), the raw figures beside it (``<out>-adaptive.json``) and, with
    ``plot``, the learning curves there (SVG; the section links it relative to ``out``)."""
    if quick:
        kwargs = {
            "n_items": 600,
            "rounds": 4,
            "batch": 50,
            "seeds": (0, 1),
            "n_boot": 200,
            "crowds": {"l2_lab": "l2_lab"},
            **kwargs,
        }
    result = run_bench(**kwargs)
    link = None
    if plot:
        Path(plot).parent.mkdir(parents=True, exist_ok=True)
        Path(plot).write_text(plot_svg(result))
        link = os.path.relpath(plot, Path(out).parent) if out else plot
    section = render(result, plot=link)
    if out:
        write_section(out, SECTION, section)
        raw = Path(out).with_name(Path(out).stem + "-adaptive.json")
        raw.write_text(json.dumps(_json_ready(result), indent=2, default=float) + "\n")
    return section
