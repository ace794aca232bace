"""Adaptive collection: which candidate triplet to ask a human about next, and when to stop asking.

The distortion engine makes candidates far faster than a crowd answers them, so a study can draw its train
items from a pool several times its budget. Each sampler turns a candidate into a score in which higher
means "a judgment here teaches more"; `draw` mixes the scores with a uniform stream and records each pick's
selection probability (its propensity) so that estimates over the served items can be reweighted back to
the pool (see docs/sampling.md for the estimator). `need_more_votes` is the per-item Bayesian stopping rule.

- ``disagreement``: the MAD competition idea (Wang & Simoncelli 2008, "Maximum differentiation
  competition", J. Vision): a committee of metrics is most informative where its members contradict each
  other, here on the sign of d0 - d1.
- ``uncertainty``: classic uncertainty sampling on the trained head's predicted p (and, with an ensemble,
  query-by-committee on the heads' spread).
- ``info_gain``: ASAP (Mikhailiuk, Wilmot, Perez-Ortiz, Yue, Mantiuk, "Active sampling for pairwise
  comparisons via approximate message passing and information gain maximization", ICPR 2020): a Thurstone
  case V scale over the distorted versions of one reference, and the comparison with the largest expected
  information gain about it. We use a Laplace approximation of the posterior and the closed-form expected
  information gain of a probit observation (Houlsby et al. 2011, "Bayesian active learning for
  classification and preference learning") instead of ASAP's message passing.

Plain numpy and scipy.special: no Django, no torch.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import log_ndtr, ndtr

SAMPLERS: dict[str, int] = {"uniform": 1, "disagreement": 1, "uncertainty": 1, "info_gain": 1}

# Houlsby et al. 2011's constant: the binary entropy h(Phi(x)) ~ exp(-x^2 / (pi ln 2)).
_C2 = math.pi * math.log(2) / 2
_PRIOR_VAR = 1.0  # Thurstone scale prior N(0, 1) per member, in units of the comparison noise (case V)
_WEIGHT_FLOOR = 1e-3  # draw's weight floor: every candidate keeps a positive chance of being asked


def sampler_version(name: str) -> str:
    """``"disagreement@1"``: the name and version that served items record, so a release names its sampler."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}: one of {', '.join(sorted(SAMPLERS))}")
    return f"{name}@{SAMPLERS[name]}"


def _matrix(x, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2:
        raise ValueError(f"{name} must be [members, candidates], got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    return arr


def disagreement_scores(d0: np.ndarray, d1: np.ndarray) -> np.ndarray:
    """[N] in [0, 1]: how evenly a committee of M metrics splits on which of p0, p1 is closer.

    d0, d1 are [M, N] distances. Each member's margins d0 - d1 are divided by that member's median absolute
    margin, so a member's units (PSNR in dB, LPIPS in its own scale) never decide the vote: only the sign
    counts for the split, and the normalised size only breaks ties. The split term is 1 - |2f - 1| with f
    the share of members voting "p1 closer" (a zero margin is half a vote each way): 1 for an even split,
    0 for a unanimous committee. Among equal splits a candidate whose members sit closer to their decision
    boundary (small normalised margins) ranks higher: the split is scaled by 1 - 0.1 mean|tanh(margin)|,
    so an even split scores between 0.9 and 1.
    """
    d0, d1 = _matrix(d0, "d0"), _matrix(d1, "d1")
    if d0.shape != d1.shape:
        raise ValueError(f"d0 and d1 differ in shape: {d0.shape} vs {d1.shape}")
    if d0.shape[1] == 0:
        return np.zeros(0)
    margin = d0 - d1
    scale = np.median(np.abs(margin), axis=1, keepdims=True)
    scale = np.where(scale > 0, scale, 1.0)  # a member with all-zero margins votes half each way anyway
    margin = margin / scale
    f = np.mean(np.sign(margin) * 0.5 + 0.5, axis=0)
    split = 1.0 - np.abs(2.0 * f - 1.0)
    return split * (1.0 - 0.1 * np.mean(np.abs(np.tanh(margin)), axis=0))


def uncertainty_scores(p: np.ndarray) -> np.ndarray:
    """[N] in [0, 1]: how unsure K heads (K >= 1) are that a human picks p1, from p of shape [K, N] or [N].

    Two signs of a useful question, combined as a soft "or" (1 - (1 - c)(1 - s)): the mean prediction
    is near 0.5 (c = 1 - |2 mean - 1|: the head's own uncertainty), or the heads disagree
    (s = 2 std over heads, 1 at the widest spread of values in [0, 1]: query by committee). So the score
    peaks at 1 where the heads agree on 0.5 and, at a fixed mean, rises with the heads' spread.
    """
    p = _matrix(p, "p")
    if ((p < 0) | (p > 1)).any():
        raise ValueError("p must lie in [0, 1]")
    c = 1.0 - np.abs(2.0 * p.mean(axis=0) - 1.0)
    s = np.clip(2.0 * p.std(axis=0), 0.0, 1.0)
    return 1.0 - (1.0 - c) * (1.0 - s)


def _probit_terms(z: np.ndarray, k: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First derivative and minus the second derivative in z of k log Phi(z) + (n - k) log Phi(-z)."""
    log_phi = -0.5 * z**2 - 0.5 * math.log(2 * math.pi)
    lam_pos, lam_neg = np.exp(log_phi - log_ndtr(z)), np.exp(log_phi - log_ndtr(-z))  # stable Mills ratios
    grad = k * lam_pos - (n - k) * lam_neg
    curv = k * lam_pos * (z + lam_pos) + (n - k) * lam_neg * (lam_neg - z)
    return grad, curv


def _precision(a: np.ndarray, b: np.ndarray, curv: np.ndarray, m: int) -> np.ndarray:
    """Minus the Hessian of the log posterior: the prior's precision plus each comparison's curvature."""
    hess = np.eye(m) / _PRIOR_VAR
    np.add.at(hess, (b, b), curv)
    np.add.at(hess, (a, a), curv)
    np.add.at(hess, (a, b), -curv)
    np.add.at(hess, (b, a), -curv)
    return hess


def _fit_thurstone(pairs: np.ndarray, k: np.ndarray, n: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Laplace approximation (MAP mean, covariance) of a Thurstone case V scale over m members.

    Model: P(b judged closer than a) = Phi(s_b - s_a) per vote, prior s ~ N(0, _PRIOR_VAR I). Newton on the
    log posterior, which is concave (log Phi is), so a few steps converge from zero.
    """
    a, b = pairs[:, 0], pairs[:, 1]
    s = np.zeros(m)
    for _ in range(50):
        g_z, h_z = _probit_terms(s[b] - s[a], k, n)
        grad = -s / _PRIOR_VAR
        np.add.at(grad, b, g_z)
        np.add.at(grad, a, -g_z)
        step = np.linalg.solve(_precision(a, b, h_z, m), grad)
        s = s + step
        if np.max(np.abs(step)) < 1e-9:
            break
    _, h_z = _probit_terms(s[b] - s[a], k, n)
    return s, np.linalg.inv(_precision(a, b, h_z, m))


def info_gain_scores(
    group: np.ndarray, a: np.ndarray, b: np.ndarray, k: np.ndarray, n: np.ndarray
) -> np.ndarray:
    """[N] >= 0 (bits): what one more vote on each comparison is expected to tell about its group's scale.

    Candidate i asks whether member b[i] or a[i] of group[i] (the distorted versions of one reference) is
    closer to the reference; k[i] of n[i] votes so far said b. Per group with at least 3 members, every
    vote in the group fits one Thurstone case V scale (a Laplace posterior N(mu, Sigma) over the members'
    values), so a vote on (a, c) also informs (a, b) through the shared member a: this is what a pair-only
    design cannot do and why groups of fewer than 3 members score 0. The score of (a, b) is the mutual
    information between the next vote y ~ Bernoulli(Phi(s_b - s_a)) and the scale, with
    s_b - s_a ~ N(m, v): H(Phi(m / sqrt(1 + v))) - C / sqrt(v + C^2) exp(-m^2 / (2 (v + C^2))), C^2 =
    pi ln 2 / 2 (Houlsby et al. 2011), the expected drop in posterior entropy. It is largest for members
    whose values are close (m near 0) and uncertain (v large), and falls as votes settle a comparison.
    """
    group, a, b = (np.asarray(x, dtype=np.int64).ravel() for x in (group, a, b))
    k, n = (np.asarray(x, dtype=np.float64).ravel() for x in (k, n))
    size = group.shape[0]
    if not all(x.shape[0] == size for x in (a, b, k, n)):
        raise ValueError("group, a, b, k and n must have one entry per candidate")
    if (a == b).any():
        raise ValueError("a candidate compares two different members: a[i] != b[i]")
    if (n < 0).any() or (k < 0).any() or (k > n).any():
        raise ValueError("votes must satisfy 0 <= k <= n")
    out = np.zeros(size)
    order = np.argsort(group, kind="stable")
    bounds = np.flatnonzero(np.diff(group[order])) + 1
    for idx in np.split(order, bounds):
        members, local = np.unique(np.concatenate([a[idx], b[idx]]), return_inverse=True)
        if members.size < 3:
            continue
        pairs = local.reshape(2, -1).T
        mu, cov = _fit_thurstone(pairs, k[idx], n[idx], members.size)
        pa, pb = pairs[:, 0], pairs[:, 1]
        m = mu[pb] - mu[pa]
        v = np.maximum(cov[pb, pb] + cov[pa, pa] - 2 * cov[pa, pb], 0.0)
        p = ndtr(m / np.sqrt(1.0 + v))
        entropy = -(p * np.log2(np.clip(p, 1e-300, 1)) + (1 - p) * np.log2(np.clip(1 - p, 1e-300, 1)))
        expected = np.sqrt(_C2) / np.sqrt(v + _C2) * np.exp(-(m**2) / (2 * (v + _C2)))
        out[idx] = np.maximum(entropy - expected, 0.0)
    return out


def draw(
    scores: np.ndarray,
    n: int,
    *,
    uniform_share: float,
    rng: np.random.Generator,
    eligible: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Pick n distinct candidates, one at a time, and the probability each had when it was picked.

    Draw t picks among the candidates still left from q_i = u / N_left + (1 - u) w_i / sum(w left), with
    u = uniform_share and w = max(score, 0)^2 + 1e-3: the uniform stream keeps the sample covering the
    whole pool, and the floor keeps every candidate's chance positive so inverse-propensity estimates stay
    defined. The returned propensities are these q_i, in draw order: with them the Des Raj estimator
    (docs/sampling.md) is unbiased for any mean over the pool. u = 1 is exactly uniform sampling without
    replacement. eligible (a bool mask) restricts the pool; fewer than n eligible means all of them.
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if not np.isfinite(scores).all():
        raise ValueError("scores hold NaN or infinite values")
    if not 0.0 <= uniform_share <= 1.0:
        raise ValueError(f"uniform_share must lie in [0, 1], got {uniform_share}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    left = np.arange(scores.size)
    if eligible is not None:
        eligible = np.asarray(eligible, dtype=bool).ravel()
        if eligible.shape != scores.shape:
            raise ValueError("eligible must be a mask with one entry per candidate")
        left = left[eligible]
    w = np.maximum(scores[left], 0.0) ** 2 + _WEIGHT_FLOOR
    picks, props = [], []
    for _ in range(min(n, left.size)):
        q = uniform_share / left.size + (1.0 - uniform_share) * w / w.sum()
        j = min(int(np.searchsorted(np.cumsum(q), rng.random() * q.sum(), side="right")), left.size - 1)
        picks.append(left[j])
        props.append(q[j])
        left, w = np.delete(left, j), np.delete(w, j)
    return np.asarray(picks, dtype=np.int64), np.asarray(props, dtype=np.float64)


def des_raj_terms(values: np.ndarray, propensities: np.ndarray, population: int) -> np.ndarray:
    """Per draw t, an unbiased estimate of a mean over the whole pool: T_t / N (Des Raj 1956).

    For ordered sampling without replacement, T_t = sum_{j<t} y_j + y_t / q_t estimates the pool total
    whatever the draw probabilities were, as long as q_t was the probability given the earlier draws (so
    the scores may change between rounds). values and propensities in draw order; N = population. The
    terms are uncorrelated, so their standard error, or a bootstrap over them, gives an interval.
    """
    y = np.asarray(values, dtype=np.float64).ravel()
    q = np.asarray(propensities, dtype=np.float64).ravel()
    if y.shape != q.shape or y.size == 0:
        raise ValueError("values and propensities must be non-empty and of equal length")
    if ((q <= 0) | (q > 1)).any():
        raise ValueError("propensities must lie in (0, 1]")
    if population < y.size:
        raise ValueError(f"population ({population}) is smaller than the number of draws ({y.size})")
    before = np.concatenate([[0.0], np.cumsum(y)[:-1]])
    return (before + y / q) / population


def des_raj_mean(values: np.ndarray, propensities: np.ndarray, population: int) -> float:
    """Unbiased estimate of a mean over the whole pool from the served items' values in draw order and their
    propensities: the average of `des_raj_terms`. Even with uniform draws it differs from the plain sample
    mean item by item (both are unbiased then); under adaptive draws only this one is."""
    return float(des_raj_terms(values, propensities, population).mean())


def _beta_cdf(x: float, a: int, b: int) -> float:
    """I_x(a, b) for integer a, b >= 1, exactly: P(Binomial(a + b - 1, x) >= a)."""
    total = a + b - 1
    return sum(math.comb(total, j) * x**j * (1 - x) ** (total - j) for j in range(a, total + 1))


def need_more_votes(
    k: int,
    n: int,
    *,
    min_votes: int,
    max_votes: int,
    confidence: float = 0.9,
    tie_width: float = 0.1,
) -> bool:
    """Should an item with k of n votes for choice 1 get another vote? Bayesian stopping on p.

    Always below min_votes, never from max_votes on. In between, the posterior Beta(1 + k, 1 + n - k) on p
    (the share of the crowd choosing 1) decides: stop when it is confident which side of 0.5 p lies on,
    the only thing a 2AFC score needs of a confident item, or that p lies within tie_width / 2 of 0.5, a
    provable near-tie that more votes will not resolve. Otherwise ask again.
    """
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if not 1 <= min_votes <= max_votes:
        raise ValueError(f"need 1 <= min_votes <= max_votes, got {min_votes}, {max_votes}")
    if not 0.5 < confidence < 1 or not 0 < tie_width < 1:
        raise ValueError("confidence must lie in (0.5, 1) and tie_width in (0, 1)")
    if n < min_votes:
        return True
    if n >= max_votes:
        return False
    a, b = 1 + k, 1 + n - k
    below = _beta_cdf(0.5, a, b)
    if max(below, 1.0 - below) >= confidence:
        return False
    tie = _beta_cdf(0.5 + tie_width / 2, a, b) - _beta_cdf(0.5 - tie_width / 2, a, b)
    return tie < confidence
