"""Agreement between a metric and human judgments (docs/science.md, "Scoring").

Conventions: ``p`` is the fraction of judges who chose p1 as closer to the reference; ``same`` the
fraction who said "same" in JND. Distances: lower = more similar.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from metric.errors import MetricError


def _vec(x, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(arr)):
        raise MetricError(f"{name} holds non-finite values")
    return arr


def two_afc_per_item(d0, d1, p) -> np.ndarray:
    """s = [d0<d1](1-p) + [d1<d0] p + [d0=d1] 0.5 per triplet (ref: score_2afc_dataset)."""
    d0, d1, p = _vec(d0, "d0"), _vec(d1, "d1"), _vec(p, "p")
    if not (len(d0) == len(d1) == len(p)):
        raise MetricError(f"d0, d1, p must have the same length, got {len(d0)}, {len(d1)}, {len(p)}")
    if np.any((p < 0) | (p > 1)):
        raise MetricError("p must be fractions in [0, 1]")
    return (d0 < d1) * (1.0 - p) + (d1 < d0) * p + (d0 == d1) * 0.5


def two_afc_score(d0, d1, p) -> float:
    """Mean 2AFC agreement in [0, 1] (multiply by 100 for the paper's numbers)."""
    scores = two_afc_per_item(d0, d1, p)
    if len(scores) == 0:
        raise MetricError("no triplets to score")
    return float(scores.mean())


def oracle_score(p) -> float:
    """The best any deterministic metric can do: mean max(p, 1 - p)."""
    p = _vec(p, "p")
    return float(np.maximum(p, 1.0 - p).mean())


def human_ceiling_plugin(p) -> float:
    """The paper's human ceiling: mean p^2 + (1 - p)^2 (biased upwards with few votes)."""
    p = _vec(p, "p")
    return float((p**2 + (1.0 - p) ** 2).mean())


def human_ceiling_loo_per_item(k, n) -> np.ndarray:
    """Unbiased leave-one-out agreement for k of n votes: [k(k-1) + (n-k)(n-k-1)] / [n(n-1)]."""
    k, n = _vec(k, "k"), _vec(n, "n")
    if np.any(n < 2):
        raise MetricError("leave-one-out agreement needs at least 2 votes per item")
    if np.any((k < 0) | (k > n)):
        raise MetricError("vote counts k must be within [0, n]")
    return (k * (k - 1) + (n - k) * (n - k - 1)) / (n * (n - 1))


def human_ceiling_loo(k, n) -> float:
    return float(human_ceiling_loo_per_item(k, n).mean())


def jnd_average_precision(d, same) -> float:
    """VOC average precision of 'same' ranked by ascending distance, with soft labels."""
    d, s = _vec(d, "d"), _vec(same, "same")
    if len(d) != len(s):
        raise MetricError(f"d and same must have the same length, got {len(d)} and {len(s)}")
    if np.any((s < 0) | (s > 1)):
        raise MetricError("same must be fractions in [0, 1]")
    if s.sum() <= 0:
        raise MetricError("JND average precision is undefined when no judge ever said 'same'")
    order = np.argsort(d, kind="stable")
    s = s[order]
    tp = np.cumsum(s)
    fp = np.cumsum(1.0 - s)
    recall = tp / s.sum()
    precision = tp / (tp + fp)
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    for i in range(len(mpre) - 1, 0, -1):
        mpre[i - 1] = max(mpre[i - 1], mpre[i])
    idx = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[idx + 1] - mrec[idx]) * mpre[idx + 1]))


def bootstrap_ci(
    statistic: Callable[[np.ndarray], float],
    n_items: int,
    *,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap over items: statistic(indices) on resampled index sets."""
    if n_items < 2:
        raise MetricError("bootstrap needs at least 2 items")
    rng = np.random.default_rng(seed)
    values = np.array([statistic(rng.integers(0, n_items, n_items)) for _ in range(n_boot)])
    lo, hi = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def two_afc_with_ci(d0, d1, p, *, n_boot: int = 1000, seed: int = 0) -> dict:
    per_item = two_afc_per_item(d0, d1, p)
    lo, hi = bootstrap_ci(lambda idx: per_item[idx].mean(), len(per_item), n_boot=n_boot, seed=seed)
    return {"score": float(per_item.mean()), "ci_low": lo, "ci_high": hi, "n": len(per_item)}
