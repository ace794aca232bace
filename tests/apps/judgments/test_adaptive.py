"""Adaptive collection on the platform (issue 20): config, candidate pools and their refill, the val split
kept uniform, Bayesian stopping in the answer path and exclusion taking its counts back."""

import pytest

from core.exceptions import ApplicationError
from judgments.assignments import assignment_start
from judgments.pool import UNIFORM, item_draw
from judgments.qc import assignment_reject, assignment_submit
from judgments.stopping import vote_budget_left
from studies.collection import SAMPLERS, collection_config, train_vote_budget
from studies.lifecycle import study_update_config
from studies.models import Item, Study
from studies.services import study_build_stimuli, study_create

pytestmark = pytest.mark.django_db


# --- config ----------------------------------------------------------------------------------------------
def test_the_platform_names_the_library_samplers():
    from metric.sampling import SAMPLERS as LIBRARY

    assert set(SAMPLERS) == set(LIBRARY)


@pytest.mark.parametrize(
    "config, field",
    [
        ({"sampling": {"sampler": "greedy"}}, "config.sampling"),
        ({"sampling": {"pool_factor": 0}}, "config.sampling"),
        ({"sampling": {"pool_factor": 21}}, "config.sampling"),
        ({"sampling": {"pool_factor": 2.5}}, "config.sampling"),
        ({"sampling": {"uniform_share": 1.5}}, "config.sampling"),
        ({"sampling": {"uniform_share": True}}, "config.sampling"),
        ({"sampling": {"extra": 1}}, "config.sampling"),
        ({"sampling": "disagreement"}, "config.sampling"),
        ({"stopping": {"confidence": 0.3}}, "config.stopping"),
        ({"stopping": {"tie_width": -0.1}}, "config.stopping"),
        ({"stopping": {"confidence": "high"}}, "config.stopping"),
        ({"judgments_per_item": {"train": [3, 2]}}, "config.judgments_per_item"),
        ({"judgments_per_item": {"train": [0, 2]}}, "config.judgments_per_item"),
        ({"judgments_per_item": {"train": [1, 2, 3]}}, "config.judgments_per_item"),
        ({"judgments_per_item": {"train": [1, 101]}}, "config.judgments_per_item"),
        ({"judgments_per_item": {"train": [True, 2]}}, "config.judgments_per_item"),
        ({"judgments_per_item": {"val": [1, 3]}}, "config.judgments_per_item"),
    ],
)
def test_bad_sampling_and_stopping_settings_are_400s_naming_the_field(config, field):
    with pytest.raises(ApplicationError) as exc:
        collection_config("2afc", config)
    assert exc.value.status_code == 400 and exc.value.extra["field"] == field


def test_a_train_range_and_a_sampler_are_valid_and_the_budget_is_the_range_mean():
    c = collection_config(
        "2afc", {"judgments_per_item": {"train": [2, 5]}, "sampling": {"sampler": "disagreement"}}
    )
    assert c["sampling"] == {"sampler": "disagreement", "pool_factor": 1, "uniform_share": 0.2}
    assert train_vote_budget(c, 10) == 35 and train_vote_budget(c, 3) == 10  # 3 x 3.5 rounded down
    assert train_vote_budget(collection_config("2afc", {}), 10) == 20


def test_a_pool_too_large_for_the_build_cap_is_refused(settings, researcher_carol):
    cap = settings.PERCEPTLAB_BUILD_LIMITS["n_items"]
    with pytest.raises(ApplicationError) as exc:
        study_create(
            name="x",
            kind="2afc",
            build_config={"n_items": cap},
            config={"sampling": {"pool_factor": 2}},
            owner=researcher_carol,
        )
    assert exc.value.extra["field"] == "config.sampling"


def test_counts_may_only_rise_including_a_range(make_study, crowd, truthful):
    study = make_study(n_test=4, n_sentinels=0, n_practice=0, config={"hit_size": 4})
    crowd(study, 1, truthful)
    with pytest.raises(ApplicationError) as exc:
        study_update_config(study=study, config={"judgments_per_item": {"train": [1, 4], "val": 5}})
    assert exc.value.status_code == 409
    study_update_config(study=study, config={"judgments_per_item": {"train": [3, 4], "val": 6}})
    targets = dict(Item.objects.filter(study=study, role="test").values_list("split", "n_target").distinct())
    assert targets == {"train": 3, "val": 6}  # the items' targets rose with the counts


# --- the uniform sampler without a pool is today's engine -----------------------------------------------
def test_without_a_pool_every_item_is_active_at_its_split_count_and_reported_uniform(make_study):
    study = make_study(n_test=10, config={"judgments_per_item": {"train": 2, "val": 5}})
    rows = Item.objects.filter(study=study, role="test").values_list(
        "split", "active", "n_target", "sampler_version", "propensity"
    )
    assert {(split, a, n) for split, a, n, _, _ in rows} == {("train", True, 2), ("val", True, 5)}
    assert {item_draw(v, p) for *_, v, p in rows} == {(UNIFORM, 1.0)}


def test_an_engine_build_with_a_pool_keeps_the_normal_build_and_its_val_split(researcher_carol):
    build = {"n_items": 12, "seed": 3, "splits": {"train": 0.5, "val": 0.5}}
    normal = study_create(name="n", kind="2afc", build_config=build, owner=researcher_carol)
    pooled = study_create(
        name="p",
        kind="2afc",
        build_config=build,
        config={"sampling": {"sampler": "disagreement", "pool_factor": 3}},
        owner=researcher_carol,
    )
    study_build_stimuli(study=normal, jobs=1)
    study_build_stimuli(study=pooled, jobs=1)
    normal.refresh_from_db()
    pooled.refresh_from_db()

    def tests(study, split):
        return list(
            Item.objects.filter(study=study, role="test", split=split)
            .order_by("index")
            .values_list("p0_image", "p1_image", "active")
        )

    assert normal.train_budget is None
    assert pooled.train_budget == len(tests(normal, "train"))  # the engine's normal train count
    assert tests(pooled, "val") == tests(normal, "val")  # same val items, all active
    pool = tests(pooled, "train")
    assert len(pool) > 2 * pooled.train_budget and not any(active for *_, active in pool)
    assert [p[:2] for p in pool[: pooled.train_budget]] == [p[:2] for p in tests(normal, "train")]


# --- candidate pools and their refill ------------------------------------------------------------------
def _pool_study(make_study, *, budget=5, sampler="disagreement", hit_size=3, **config):
    study = make_study(
        n_test=20,
        n_sentinels=2,
        n_practice=0,
        val_fraction=0.25,
        config={"hit_size": hit_size, "sampling": {"sampler": sampler, "uniform_share": 0.2}, **config},
    )
    Item.objects.filter(study=study, role="test", split="train").update(active=False)
    Study.objects.filter(pk=study.pk).update(train_budget=budget)
    study.refresh_from_db()
    return study


def _trains(study):
    return Item.objects.filter(study=study, role="test", split="train")


def test_a_start_releases_candidates_uniformly_before_any_score_and_never_beyond_the_budget(make_study):
    study = _pool_study(make_study)
    vals_before = list(Item.objects.filter(study=study, split="val").values("id", "active", "propensity"))
    a = assignment_start(study=study, platform="anonymous", worker_id="w0").assignment
    released = list(_trains(study).filter(active=True).values_list("sampler_version", "propensity"))
    assert len(released) == 5  # the window wanted 2 HITs (6); the budget allows 5
    assert all(v == UNIFORM and 0 < p <= 1 for v, p in released)
    # only active items were served
    served = set(a.trials.filter(kind="test").values_list("item_id", flat=True))
    assert served <= set(Item.objects.filter(study=study, active=True).values_list("pk", flat=True))
    for w in range(1, 12):
        try:
            assignment_start(study=study, platform="anonymous", worker_id=f"w{w}")
        except ApplicationError:
            pass
    assert _trains(study).filter(active=True).count() == 5
    # the val split was left alone
    vals_after = list(Item.objects.filter(study=study, split="val").values("id", "active", "propensity"))
    assert vals_after == vals_before and all(v["active"] for v in vals_after)


def test_released_candidates_follow_the_scores_and_carry_the_sampler_version(make_study):
    study = _pool_study(make_study, budget=1, sampling={"sampler": "disagreement", "uniform_share": 0.0})
    trains = list(_trains(study).order_by("index"))
    _trains(study).update(score=0.0)
    favourite = trains[7]
    Item.objects.filter(pk=favourite.pk).update(score=1.0)
    assignment_start(study=study, platform="anonymous", worker_id="w0")
    (item,) = _trains(study).filter(active=True)
    assert item.pk == favourite.pk and item.sampler_version == "disagreement@1"
    assert 0.9 < item.propensity <= 1


def test_the_uniform_sampler_ignores_scores(make_study):
    study = _pool_study(make_study, sampler="uniform")
    _trains(study).update(score=1.0)
    assignment_start(study=study, platform="anonymous", worker_id="w0")
    assert set(_trains(study).filter(active=True).values_list("sampler_version", flat=True)) == {UNIFORM}


def test_a_worker_who_has_seen_every_released_item_gets_more_released(make_study, crowd, truthful):
    study = _pool_study(make_study, budget=12, hit_size=3, judgments_per_item={"train": 5, "val": 5})
    crowd(study, 1, truthful, prefix="same-")
    assert _trains(study).filter(active=True).count() == 6  # two HITs' worth
    for _ in range(3):  # the same worker again: 5 val + 7 train items exceed what was released
        crowd(study, 1, truthful, prefix="same-")
    assert study.assignments.filter(status="submitted").count() == 4  # never "no work" while budget was left
    assert _trains(study).filter(active=True).count() > 6


# --- the val split stays uniform ------------------------------------------------------------------------
def test_val_items_are_served_breadth_first_as_before_next_to_a_pool(make_study, crowd, truthful):
    study = _pool_study(make_study, budget=5, hit_size=5, judgments_per_item={"train": 2, "val": 3})
    crowd(study, 30, truthful)
    vals = list(Item.objects.filter(study=study, role="test", split="val"))
    assert vals and all(v.n_judgments == 3 and v.active and v.propensity is None for v in vals)
    trains = _trains(study)
    assert trains.filter(active=True).count() == 5
    assert all(i.n_judgments == 2 for i in trains.filter(active=True))
    assert not trains.filter(active=False, n_judgments__gt=0).exists()


# --- Bayesian stopping in the answer path -----------------------------------------------------------------
def _stopping_study(make_study, *, n_test=4, jpi=(2, 4), confidence=0.85):
    return make_study(
        n_test=n_test,
        n_sentinels=0,
        n_practice=0,
        val_fraction=0,
        config={
            "hit_size": 1,
            "judgments_per_item": {"train": list(jpi), "val": 1},
            "stopping": {"confidence": confidence, "tie_width": 0.1},
        },
    )


def _vote(study, worker, choice, answer_trials):
    a = assignment_start(study=study, platform="anonymous", worker_id=worker).assignment
    answer_trials(a, lambda trial, item: choice)
    assignment_submit(token=a.token)
    return a


def test_a_split_item_gets_more_votes_and_a_unanimous_one_stops_at_min(make_study, answer_trials):
    study = _stopping_study(make_study, n_test=1)
    item = _trains(study).get()
    _vote(study, "w0", "p0", answer_trials)
    _vote(study, "w1", "p0", answer_trials)  # 2 of 2 for p0: P(p < 0.5) = 0.875 >= 0.85, stop
    item.refresh_from_db()
    assert (item.n_judgments, item.n_ones, item.n_target) == (2, 0, 2)
    with pytest.raises(ApplicationError):
        assignment_start(study=study, platform="anonymous", worker_id="w2")

    split = _stopping_study(make_study, n_test=1)
    item = _trains(split).get()
    _vote(split, "v0", "p0", answer_trials)
    _vote(split, "v1", "p1", answer_trials)  # 1 of 2: undecided, another vote
    item.refresh_from_db()
    assert (item.n_judgments, item.n_ones, item.n_target) == (2, 1, 3)
    _vote(split, "v2", "p1", answer_trials)  # 2 of 3 is undecided too, but the budget is spent:
    item.refresh_from_db()  # one item x mean(2, 4) = 3 train judgments
    assert (item.n_judgments, item.n_target) == (3, 3)
    assert vote_budget_left(study_id=split.pk, config=split.collection) == 0
    with pytest.raises(ApplicationError):
        assignment_start(study=split, platform="anonymous", worker_id="v3")


def test_raised_targets_stay_within_the_train_vote_budget(make_study, answer_trials):
    study = _stopping_study(make_study, n_test=4, jpi=(1, 5), confidence=0.99)
    budget = train_vote_budget(study.collection, 4)  # 4 + 8 = 12
    for w in range(40):
        try:
            _vote(study, f"w{w}", ("p0", "p1")[w % 2], answer_trials)
        except ApplicationError:
            break
    trains = list(_trains(study))
    assert sum(i.n_target for i in trains) == budget and sum(i.n_judgments for i in trains) == budget
    assert all(i.n_judgments <= 5 for i in trains)
    assert vote_budget_left(study_id=study.pk, config=study.collection) == 0


def test_exclusion_takes_the_choice_counts_back(make_study, answer_trials):
    study = _stopping_study(make_study, n_test=1, jpi=(2, 2))
    item = _trains(study).get()
    a = _vote(study, "w0", "p1", answer_trials)
    _vote(study, "w1", "p0", answer_trials)
    item.refresh_from_db()
    assert (item.n_judgments, item.n_ones) == (2, 1)
    assignment_reject(assignment=a)
    item.refresh_from_db()
    assert (item.n_judgments, item.n_ones) == (1, 0)
    b = _vote(study, "w2", "p1", answer_trials)  # the item reopened for the vote taken back
    item.refresh_from_db()
    assert (item.n_judgments, item.n_ones) == (2, 1)
    assignment_reject(assignment=b)
    assignment_reject(assignment=b)  # twice: counted back once
    item.refresh_from_db()
    assert (item.n_judgments, item.n_ones) == (1, 0)
