"""metric.sampling on fixed scores: each sampler's ordering, draw's propensities, the stopping rule."""

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from metric.sampling import (
    SAMPLERS,
    des_raj_mean,
    disagreement_scores,
    draw,
    info_gain_scores,
    need_more_votes,
    sampler_version,
    uncertainty_scores,
)


def test_sampler_version_names_every_sampler_and_rejects_unknown_ones():
    assert sampler_version("disagreement") == "disagreement@1"
    assert {sampler_version(name) for name in SAMPLERS} == {f"{n}@{v}" for n, v in SAMPLERS.items()}
    with pytest.raises(ValueError, match="uniform") as err:
        sampler_version("random")
    assert "info_gain" in str(err.value)


# ---- disagreement -------------------------------------------------------------------------------------


def _committee():
    """4 members x 3 candidates: 0 splits 2-2, 1 splits 3-1, 2 is unanimous."""
    d0 = np.array([[1.0, 1.0, 1.0], [1.0, 1.0, 1.0], [2.0, 2.0, 2.0], [2.0, 1.0, 2.0]])
    d1 = np.array([[2.0, 2.0, 2.0], [2.0, 2.0, 2.0], [1.0, 1.0, 3.0], [1.0, 3.0, 3.0]])
    return d0, d1


def test_disagreement_ranks_a_split_committee_above_a_unanimous_one():
    scores = disagreement_scores(*_committee())
    assert scores[0] > scores[1] > scores[2]
    assert scores[2] == 0.0
    assert 0.9 <= scores[0] <= 1.0 and 0.0 <= scores.min()


def test_disagreement_is_invariant_to_a_members_units():
    rng = np.random.default_rng(0)
    d0, d1 = (np.concatenate([x, rng.random((4, 5))], axis=1) for x in _committee())  # non-degenerate medians
    base = disagreement_scores(d0, d1)
    scaled0, scaled1 = d0.copy(), d1.copy()
    scaled0[2] *= 1000.0  # member 2 now reports in other units (and shifted: only d0 - d1 matters)
    scaled1[2] *= 1000.0
    scaled0[3] = scaled0[3] * 0.01 + 5.0
    scaled1[3] = scaled1[3] * 0.01 + 5.0
    np.testing.assert_allclose(disagreement_scores(scaled0, scaled1), base, atol=1e-12)


def test_disagreement_breaks_ties_among_equal_splits_towards_small_margins():
    d0 = np.array([[1.0, 1.0, 0.0, 0.0], [2.0, 1.0, 0.0, 0.0]])
    d1 = np.array([[1.1, 3.0, 0.0, 0.0], [1.9, 0.0, 0.0, 0.0]])  # 0: both near the boundary, 1: far
    scores = disagreement_scores(d0, d1)
    assert scores[0] > scores[1] > 0


def test_disagreement_of_no_candidates_is_empty():
    assert disagreement_scores(np.zeros((3, 0)), np.zeros((3, 0))).shape == (0,)


def test_disagreement_rejects_mismatched_or_non_finite_input():
    with pytest.raises(ValueError, match="shape"):
        disagreement_scores(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="NaN"):
        disagreement_scores(np.array([[np.nan]]), np.array([[1.0]]))


# ---- uncertainty --------------------------------------------------------------------------------------


def test_uncertainty_peaks_at_one_half():
    p = np.linspace(0, 1, 21)
    scores = uncertainty_scores(p)  # K = 1
    assert scores.argmax() == 10 and scores[10] == pytest.approx(1.0)
    assert (np.diff(scores[:11]) > 0).all() and (np.diff(scores[10:]) < 0).all()
    assert scores[0] == scores[-1] == 0.0


def test_uncertainty_rises_with_ensemble_spread_at_a_fixed_mean():
    p = np.array([[0.8, 0.7, 0.6, 0.5], [0.8, 0.9, 1.0, 1.0], [0.8, 0.8, 0.8, 0.9]])
    assert np.allclose(p.mean(axis=0)[:3], 0.8)
    scores = uncertainty_scores(p)
    assert scores[0] < scores[1] < scores[2]


def test_uncertainty_rejects_probabilities_outside_the_unit_interval():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        uncertainty_scores([[0.5, 1.2]])


# ---- info_gain ----------------------------------------------------------------------------------------


def _design(members: int, group: int = 0):
    pairs = np.array(list(itertools.combinations(range(members), 2)))
    return np.full(len(pairs), group), pairs[:, 0], pairs[:, 1]


def test_info_gain_prefers_close_uncertain_members_over_settled_comparisons():
    group, a, b = _design(4)  # pairs (0,1) (0,2) (0,3) (1,2) (1,3) (2,3)
    k = np.array([20, 20, 20, 0, 0, 0])  # member 0 lost 20 of 20 against 1, 2 and 3: far below them
    n = np.array([20, 20, 20, 0, 0, 0])
    scores = info_gain_scores(group, a, b, k, n)
    assert (scores >= 0).all()
    assert scores[3:].min() > 3 * scores[:3].max()  # 1, 2, 3 are close and unknown; 0's place is settled
    fresh = info_gain_scores(group, a, b, np.zeros(6), np.zeros(6))
    assert np.allclose(fresh, fresh[0]) and fresh[0] > scores[0]


def test_info_gain_shares_evidence_through_a_common_member():
    group, a, b = _design(3)  # (0,1) (0,2) (1,2)
    # 0 vs 1 and 0 vs 2 asked often and both balanced: 1 and 2 sit close to 0, hence to each other, but
    # the direct (1, 2) comparison is still the least settled one
    k, n = np.array([10, 10, 0]), np.array([20, 20, 0])
    scores = info_gain_scores(group, a, b, k, n)
    assert scores[2] > scores[0] and scores[2] > scores[1]


def test_info_gain_is_zero_for_groups_of_fewer_than_three_members():
    g3, a3, b3 = _design(3, group=7)
    group = np.concatenate([[1, 2, 2], g3])
    a = np.concatenate([[0, 0, 0], a3])
    b = np.concatenate([[1, 1, 1], b3])  # group 1: one pair; group 2: the same pair twice
    scores = info_gain_scores(group, a, b, np.zeros(6), np.zeros(6))
    assert (scores[:3] == 0).all() and (scores[3:] > 0).all()


def test_info_gain_rejects_bad_votes_and_self_comparisons():
    group, a, b = _design(3)
    with pytest.raises(ValueError, match="k <= n"):
        info_gain_scores(group, a, b, np.array([3, 0, 0]), np.array([2, 0, 0]))
    with pytest.raises(ValueError, match="different members"):
        info_gain_scores(group, a, a, np.zeros(3), np.zeros(3))


# ---- draw ---------------------------------------------------------------------------------------------


def test_draw_returns_distinct_indices_with_the_exact_mixture_probability_at_each_draw():
    scores = np.array([0.0, 0.9, 0.2, 0.5, 1.0, 0.05, 0.7])
    eligible = np.array([True, True, True, False, True, True, True])
    u = 0.3
    for seed in range(20):
        picks, props = draw(scores, 4, uniform_share=u, rng=np.random.default_rng(seed), eligible=eligible)
        assert len(set(picks.tolist())) == 4 and eligible[picks].all()
        left = [i for i in range(7) if eligible[i]]
        for pick, prop in zip(picks, props, strict=True):
            w = {i: scores[i] ** 2 + 1e-3 for i in left}
            exact = u / len(left) + (1 - u) * w[pick] / math.fsum(w.values())
            assert prop == pytest.approx(exact, rel=1e-12) and 0 < prop <= 1
            left.remove(pick)


def test_draw_returns_every_eligible_candidate_when_asked_for_more():
    picks, props = draw(np.ones(5), 9, uniform_share=0.0, rng=np.random.default_rng(0))
    assert sorted(picks.tolist()) == [0, 1, 2, 3, 4] and props[-1] == 1.0
    picks, _ = draw(np.ones(5), 3, uniform_share=0.5, rng=np.random.default_rng(0), eligible=np.zeros(5))
    assert picks.size == 0


def test_draw_with_uniform_share_one_is_uniform():
    scores = np.array([0.0, 0.0, 1.0, 1.0, 0.5, 0.1, 0.9, 0.3])  # scores must not matter
    rng = np.random.default_rng(12345)
    first = np.array([draw(scores, 3, uniform_share=1.0, rng=rng)[0][0] for _ in range(8000)])
    counts = np.bincount(first, minlength=8)
    assert stats.chisquare(counts).pvalue > 0.01
    _, props = draw(scores, 3, uniform_share=1.0, rng=rng)
    np.testing.assert_allclose(props, [1 / 8, 1 / 7, 1 / 6])


def test_draw_gives_every_eligible_candidate_a_positive_chance():
    scores = np.array([0.0] * 5 + [1.0] * 5)
    # even with no uniform stream a zero score keeps the weight floor: q = 1e-3 / (5 * 1.001 + 5e-3)
    picks, props = draw(scores, 10, uniform_share=0.0, rng=np.random.default_rng(0))
    assert sorted(picks.tolist()) == list(range(10)) and (props > 0).all()
    rng = np.random.default_rng(1)
    hit = np.zeros(10, int)
    for _ in range(3000):
        hit[draw(scores, 1, uniform_share=0.2, rng=rng)[0]] += 1
    assert (hit > 0).all()  # the uniform stream reaches the zero-score candidates (q = 0.04 each)
    assert hit[5:].sum() > 5 * hit[:5].sum()  # and the scores still steer the draw


def test_draw_rejects_bad_arguments():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="uniform_share"):
        draw(np.ones(3), 1, uniform_share=1.5, rng=rng)
    with pytest.raises(ValueError, match="NaN"):
        draw(np.array([np.nan, 1.0]), 1, uniform_share=0.5, rng=rng)
    with pytest.raises(ValueError, match="eligible"):
        draw(np.ones(3), 1, uniform_share=0.5, rng=rng, eligible=np.ones(2, bool))


def test_des_raj_reweights_an_adaptive_sample_back_to_the_pool_mean():
    rng = np.random.default_rng(7)
    y = rng.random(40)
    scores = y**3  # the sampler favours large values: the plain sample mean is biased upwards
    naive, weighted = [], []
    for _ in range(3000):
        picks, props = draw(scores, 8, uniform_share=0.1, rng=rng)
        naive.append(y[picks].mean())
        weighted.append(des_raj_mean(y[picks], props, 40))
    se = np.std(weighted) / np.sqrt(len(weighted))
    assert abs(np.mean(weighted) - y.mean()) < 3 * se
    assert np.mean(naive) - y.mean() > 10 * se


def test_des_raj_matches_a_hand_computation_and_rejects_bad_input():
    y = np.array([3.0, 1.0, 4.0, 1.0])
    q = 1 / np.array([10, 9, 8, 7])  # uniform draws from a pool of 10
    # T = 3*10, 3 + 1*9, 4 + 4*8, 8 + 1*7 = 30, 12, 36, 15; mean 23.25 over N = 10
    assert des_raj_mean(y, q, 10) == pytest.approx(2.325)
    with pytest.raises(ValueError, match="propensities"):
        des_raj_mean(y, np.zeros(4), 10)
    with pytest.raises(ValueError, match="population"):
        des_raj_mean(y, q, 3)


# ---- need_more_votes ----------------------------------------------------------------------------------


def test_need_more_votes_respects_min_and_max():
    assert need_more_votes(0, 0, min_votes=2, max_votes=6)
    assert need_more_votes(1, 1, min_votes=2, max_votes=6)  # 1-0 is below min: ask again
    assert not need_more_votes(3, 6, min_votes=2, max_votes=6)  # a 3-3 split at max: stop anyway
    assert need_more_votes(3, 6, min_votes=2, max_votes=7)


def test_need_more_votes_stops_on_a_confident_majority_and_continues_on_two_two():
    assert not need_more_votes(4, 4, min_votes=2, max_votes=10)  # P(p > .5) = 1 - .5^5
    assert not need_more_votes(0, 4, min_votes=2, max_votes=10)
    assert need_more_votes(2, 4, min_votes=2, max_votes=10)
    assert need_more_votes(3, 4, min_votes=2, max_votes=10)  # P(p > .5) = 0.81 < 0.9
    assert not need_more_votes(3, 4, min_votes=2, max_votes=10, confidence=0.8)


def test_need_more_votes_stops_on_a_confident_tie():
    # 200-200: Beta(201, 201) has sd 0.025, so p is within 0.5 +- 0.05 with probability ~0.95
    assert not need_more_votes(200, 400, min_votes=2, max_votes=1000)
    assert need_more_votes(200, 400, min_votes=2, max_votes=1000, confidence=0.99)
    assert not need_more_votes(200, 400, min_votes=2, max_votes=1000, confidence=0.99, tie_width=0.2)


def test_need_more_votes_matches_scipys_beta_posterior():
    for k, n in [(5, 7), (2, 9), (30, 50)]:
        side = max(stats.beta.cdf(0.5, 1 + k, 1 + n - k), stats.beta.sf(0.5, 1 + k, 1 + n - k))
        assert need_more_votes(k, n, min_votes=1, max_votes=999, confidence=side - 1e-9) is False
        assert need_more_votes(k, n, min_votes=1, max_votes=999, confidence=min(side + 1e-9, 0.999))


def test_need_more_votes_rejects_impossible_counts():
    with pytest.raises(ValueError, match="k <= n"):
        need_more_votes(3, 2, min_votes=1, max_votes=5)
    with pytest.raises(ValueError, match="min_votes"):
        need_more_votes(0, 0, min_votes=4, max_votes=2)
