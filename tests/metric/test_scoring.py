"""Hand-computed cases (docs/science.md, "Scoring")."""

import numpy as np
import pytest

from metric.errors import MetricError
from metric.scoring import (
    bootstrap_ci,
    human_ceiling_loo,
    human_ceiling_plugin,
    jnd_average_precision,
    oracle_score,
    two_afc_per_item,
    two_afc_score,
    two_afc_with_ci,
)


def test_two_afc_golden_cases():
    assert two_afc_per_item([0.1], [0.2], [0.8]) == pytest.approx([0.2])
    assert two_afc_per_item([0.3, 0.3], [0.3, 0.3], [0.0, 0.9]) == pytest.approx([0.5, 0.5])
    assert two_afc_score([0.1, 0.5], [0.2, 0.4], [0.8, 0.6]) == pytest.approx((0.2 + 0.6) / 2)


@pytest.mark.parametrize(
    "same, ap",
    [((1, 0, 1), 0.8333), ((2 / 3, 1 / 3, 0), 0.6111), ((1, 1, 0), 1.0), ((0, 0, 1), 0.3333)],
)
def test_jnd_average_precision_golden_cases(same, ap):
    assert jnd_average_precision([0.1, 0.2, 0.3], same) == pytest.approx(ap, abs=1e-4)


def test_jnd_uses_a_stable_sort_and_flattens():
    d = np.array([[[[0.2]]], [[[0.2]]], [[[0.1]]]])  # N x 1 x 1 x 1, as LPIPS returns
    assert jnd_average_precision(d, [0, 1, 1]) == pytest.approx(
        jnd_average_precision([0.2, 0.2, 0.1], [0, 1, 1])
    )
    with pytest.raises(MetricError, match="no judge"):
        jnd_average_precision([0.1, 0.2], [0, 0])


def test_human_ceiling_plugin_and_leave_one_out():
    assert human_ceiling_plugin([0.8]) == pytest.approx(0.68)
    assert human_ceiling_loo([4], [5]) == pytest.approx(0.60)
    assert human_ceiling_loo([3], [5]) == pytest.approx(0.40)
    assert human_ceiling_loo([5, 0], [5, 5]) == pytest.approx(1.0)
    with pytest.raises(MetricError):
        human_ceiling_loo([1], [1])


def test_oracle_is_mean_of_max():
    assert oracle_score([0.8, 0.4, 0.5]) == pytest.approx((0.8 + 0.6 + 0.5) / 3)
    # the oracle bounds every deterministic metric
    rng = np.random.default_rng(0)
    p = rng.random(200)
    for _ in range(20):
        d0, d1 = rng.random(200), rng.random(200)
        assert two_afc_score(d0, d1, p) <= oracle_score(p) + 1e-12


def test_bootstrap_ci_brackets_the_mean_and_narrows_with_n():
    rng = np.random.default_rng(1)
    small, large = rng.random(50), rng.random(5000)
    lo, hi = bootstrap_ci(lambda idx: small[idx].mean(), len(small), seed=0)
    assert lo < small.mean() < hi
    lo2, hi2 = bootstrap_ci(lambda idx: large[idx].mean(), len(large), n_boot=300, seed=0)
    assert hi2 - lo2 < (hi - lo) / 3
    assert two_afc_with_ci([0.1] * 10, [0.2] * 10, [0.0] * 10)["score"] == 1.0


def test_bad_inputs_are_clear():
    with pytest.raises(MetricError, match="same length"):
        two_afc_score([0.1], [0.1, 0.2], [0.5])
    with pytest.raises(MetricError, match=r"\[0, 1\]"):
        two_afc_score([0.1], [0.2], [1.5])
    with pytest.raises(MetricError, match="non-finite"):
        two_afc_score([np.nan], [0.2], [0.5])
