"""A disagreement-sampled collection beats a uniform one at a fixed small budget, on every seed.

Library-level simulation (no engine, no network): a pool of candidate triplets whose two metrics see the
true perceptual margin through different amounts of noise, a crowd that answers from the true margin with
lapses, 2 votes per asked item. The question a researcher asks of such a study is which metric is better;
the answer is the pool-wide 2AFC difference of the two, estimated from the served items with their
propensities (Des Raj) and a bootstrap over the served items. Disagreement sampling with the two metrics as
the committee (MAD's set-up: pit the metrics against each other) asks where they split, which is where
that difference lives, so at the same budget its interval is narrower and decides the ranking, while the
estimate stays unbiased for the whole pool. The full benchmark with real
triplets, simulated observers and trained heads is `make bench-adaptive` (docs/benchmarks.md)."""

import numpy as np
from scipy.special import ndtr

from metric.sampling import des_raj_mean, des_raj_terms, disagreement_scores, draw
from metric.scoring import two_afc_per_item

POOL, BUDGET, VOTES, LAPSE = 3000, 150, 2, 0.05


def _world(seed: int):
    rng = np.random.default_rng(seed)
    margin = rng.normal(size=POOL)  # true d0 - d1 in perceptual units: > 0 means p1 is closer
    p_true = LAPSE / 2 + (1 - LAPSE) * ndtr(3 * margin)
    noise = {"a": 0.3, "b": 0.5}  # metric a sees the margin better
    d1 = rng.uniform(1, 2, POOL)
    dist = {m: (d1 + margin + rng.normal(scale=s, size=POOL), d1) for m, s in noise.items()}
    return rng, p_true, dist


def _committee_scores(dist: dict) -> np.ndarray:
    return disagreement_scores(np.stack([dist[m][0] for m in "ab"]), np.stack([dist[m][1] for m in "ab"]))


def _collect(sampler: str, seed: int):
    rng, p_true, dist = _world(seed)
    scores = _committee_scores(dist) if sampler == "disagreement" else np.zeros(POOL)
    picks, props = draw(scores, BUDGET, uniform_share=0.2 if sampler != "uniform" else 1.0, rng=rng)
    p = rng.binomial(VOTES, p_true[picks]) / VOTES
    agree = {m: two_afc_per_item(dist[m][0][picks], dist[m][1][picks], p) for m in ("a", "b")}
    diff = agree["a"] - agree["b"]
    terms = des_raj_terms(diff, props, POOL)
    est = des_raj_mean(diff, props, POOL)
    boot = np.random.default_rng([seed, 9]).integers(0, BUDGET, (1000, BUDGET))
    lo, hi = np.quantile(terms[boot].mean(axis=1), [0.025, 0.975])
    truth = float((two_afc_per_item(*dist["a"], p_true) - two_afc_per_item(*dist["b"], p_true)).mean())
    return est, lo, hi, truth


def test_disagreement_sampling_resolves_the_metric_ranking_where_uniform_cannot():
    uniform_resolved = 0
    for seed in range(6):
        _, u_lo, u_hi, truth = _collect("uniform", seed)
        _, d_lo, d_hi, _ = _collect("disagreement", seed)
        assert truth > 0.01  # metric a is truly better on the pool
        assert d_hi - d_lo < 0.7 * (u_hi - u_lo), seed  # a much narrower interval on every seed
        assert d_lo > 0, seed  # and the ranking is decided at this budget on every seed
        uniform_resolved += u_lo > 0
    assert uniform_resolved <= 3  # which the same budget drawn uniformly decides on half the seeds at most


def test_the_reweighted_estimate_stays_unbiased_under_disagreement_sampling():
    errors = np.array(
        [est - truth for est, _, _, truth in (_collect("disagreement", seed) for seed in range(40))]
    )
    naive = []
    for seed in range(40):  # the unweighted mean over the served items is biased towards split items
        rng, p_true, dist = _world(seed)
        names = sorted(dist)
        scores = disagreement_scores(
            np.stack([dist[m][0] for m in names]), np.stack([dist[m][1] for m in names])
        )
        picks, _ = draw(scores, BUDGET, uniform_share=0.2, rng=rng)
        p = rng.binomial(VOTES, p_true[picks]) / VOTES
        diff = two_afc_per_item(*(d[picks] for d in dist["a"]), p) - two_afc_per_item(
            *(d[picks] for d in dist["b"]), p
        )
        truth = float((two_afc_per_item(*dist["a"], p_true) - two_afc_per_item(*dist["b"], p_true)).mean())
        naive.append(diff.mean() - truth)
    se = errors.std(ddof=1) / np.sqrt(len(errors))
    assert abs(errors.mean()) < 3 * se
    assert np.mean(naive) > 5 * se
