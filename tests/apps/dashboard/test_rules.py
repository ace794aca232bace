"""The exclusion rule in words, for a few configs, and the words agree with what QC applies."""

import pytest

from dashboard.rules import exclusion_rule_text, sentinels_needed, timing_rule_text
from studies.collection import DEFAULTS

NBSP = "\u00a0"


def words(kind="2afc", **overrides):
    config = {**DEFAULTS[kind], **overrides}
    return exclusion_rule_text(config=config, kind=kind).replace(NBSP, " ")


def test_the_2afc_default_reads_as_14_of_15():
    assert words().startswith(
        "An assignment is excluded when fewer than 14 of its 15 sentinels are right (below 93.3 %;"
    )
    assert "0.933" not in words() and "{" not in words()


def test_the_jnd_default_reads_as_30_of_40_with_its_timing():
    assert "fewer than 30 of its 40 sentinels are right (below 75.0 %" in words("jnd")
    timing = timing_rule_text(config=DEFAULTS["jnd"]).replace(NBSP, " ")
    assert timing.startswith("Display timing: reference 1000 ms, blank 250 ms, distorted image 1000 ms.")
    assert "flagged" in timing and timing_rule_text(config=DEFAULTS["2afc"]) == ""


def test_side_bias_and_response_time_clauses():
    text = words(exclusion={"min_sentinel_accuracy": 0.8, "max_side_bias": 0.2, "min_median_rt_ms": 400})
    assert "fewer than 12 of its 15 sentinels are right (below 80.0 %" in text
    assert ", or when its share of “left” answers is outside 30.0 % to 70.0 %" in text
    assert text.endswith(", or when its median response time is under 400 ms.")
    assert "“same” answers" in words("jnd", exclusion={"max_side_bias": 0.1})


@pytest.mark.parametrize(
    "overrides,expected",
    [
        ({"exclusion": {}}, "No exclusion rule: every submitted assignment counts."),
        (
            {"exclusion": {"min_sentinel_accuracy": None}},
            "No exclusion rule: every submitted assignment counts.",
        ),
        (
            {"exclusion": {"min_sentinel_accuracy": 0}},
            "No exclusion rule: every submitted assignment counts.",
        ),
        ({"sentinel_rate": 0}, "this study shows no sentinels"),
        ({"exclusion": {"min_sentinel_accuracy": 1.5}}, "below 150.0 % (a threshold no assignment reaches)"),
    ],
)
def test_edge_configs(overrides, expected):
    assert expected in words(**overrides)


def test_sentinels_needed_matches_the_qc_tolerance():
    assert sentinels_needed(14 / 15, 15) == 14  # 14/15 stored as 0.9333...: 14 right is enough
    assert sentinels_needed(0.75, 40) == 30 and sentinels_needed(0.8, 5) == 4
    assert sentinels_needed(1.0, 3) == 3 and sentinels_needed(1.01, 3) == 4


@pytest.mark.django_db
@pytest.mark.parametrize("right,excluded", [(3, True), (4, False)])
def test_the_words_name_what_qc_excludes(make_study, answer_trials, right, excluded):
    """'fewer than 4 of its 5': an assignment with 3 right is excluded, one with 4 right is not."""
    from judgments.assignments import assignment_start
    from judgments.models import Trial
    from judgments.qc import assignment_submit

    study = make_study(
        n_test=20,
        n_sentinels=5,
        n_practice=0,
        config={"hit_size": 20, "sentinel_rate": 0.2, "exclusion": {"min_sentinel_accuracy": 0.8}},
    )
    text = exclusion_rule_text(config=study.collection, kind="2afc")
    assert "fewer than 4 of its 5 sentinels are right" in text
    a = assignment_start(study=study, platform="anonymous", worker_id="w").assignment
    sentinel_ids = list(
        Trial.objects.filter(assignment=a, kind=Trial.Kind.SENTINEL)
        .order_by("position")
        .values_list("item_id", flat=True)
    )
    assert len(sentinel_ids) == 5
    wrong = set(sentinel_ids[right:])

    def policy(trial, item):
        if item.expected:
            return ("p1" if item.expected == "p0" else "p0") if item.pk in wrong else item.expected
        return "p0"

    answer_trials(a, policy)
    assert assignment_submit(token=a.token).excluded is excluded
