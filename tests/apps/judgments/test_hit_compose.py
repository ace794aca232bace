"""hit_compose: a HIT's trial sequence from given items and an rng. Pure: no database."""

import random
from collections import Counter

import pytest

from judgments.assignments import hit_compose


def compose(seed=0, n_tests=10, n_pool=6, n_practice=2, n_sentinels=3, balance_sides=True):
    tests = [f"t{k}" for k in range(n_tests)]
    pool = [f"s{k}" for k in range(n_pool)]
    practice = [f"p{k}" for k in range(n_practice)]
    return hit_compose(
        tests=tests,
        sentinel_pool=pool,
        practice=practice,
        n_sentinels=n_sentinels,
        balance_sides=balance_sides,
        rng=random.Random(seed),
    )


def test_practice_comes_first_in_order():
    sequence = compose()
    assert [(item, kind) for item, kind, _ in sequence[:2]] == [("p0", "practice"), ("p1", "practice")]
    assert all(kind != "practice" for _, kind, _ in sequence[2:])


def test_every_test_item_once_and_the_requested_sentinels_from_the_pool():
    sequence = compose()
    kinds = Counter(kind for _, kind, _ in sequence)
    assert kinds == {"practice": 2, "test": 10, "sentinel": 3}
    assert sorted(item for item, kind, _ in sequence if kind == "test") == sorted(f"t{k}" for k in range(10))
    sentinels = [item for item, kind, _ in sequence if kind == "sentinel"]
    assert len(set(sentinels)) == 3 and set(sentinels) <= {f"s{k}" for k in range(6)}


def test_sentinels_land_at_random_positions():
    positions = {
        tuple(k for k, (_, kind, _) in enumerate(compose(seed=seed)) if kind == "sentinel")
        for seed in range(20)
    }
    assert len(positions) > 10


@pytest.mark.parametrize("n_practice", [0, 1, 2])
def test_2afc_sides_are_balanced(n_practice):
    sequence = compose(n_practice=n_practice)
    swaps = [swap for _, _, swap in sequence]
    assert abs(sum(swaps) - (len(swaps) - sum(swaps))) <= 1
    assert (
        len({tuple(swap for _, _, swap in compose(seed=seed)) for seed in range(10)}) > 1
    )  # in random order


def test_jnd_shows_the_reference_first():
    assert not any(swap for _, _, swap in compose(balance_sides=False))


def test_the_same_rng_state_composes_the_same_hit():
    assert compose(seed=7) == compose(seed=7)


def test_no_sentinels_asked_none_drawn():
    assert all(kind != "sentinel" for _, kind, _ in compose(n_sentinels=0))
