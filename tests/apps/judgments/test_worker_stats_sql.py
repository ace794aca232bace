"""judgments.selectors.worker_stats in SQL: pinned to the Python definition it replaced (kept here as the
reference), paginated, and with a query count that does not grow with the study."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict

import pytest

from judgments.answers import judgment_submit
from judgments.assignments import assignment_start
from judgments.models import RESPONSES, Assignment, Judgment, Trial, Worker, WorkerReview
from judgments.qc import assignment_submit
from judgments.reviews import worker_review_set
from judgments.selectors import worker_shares, worker_stats, worker_stats_page
from judgments.workers import worker_hash

pytestmark = pytest.mark.django_db


def reference_worker_stats(*, study) -> list[dict]:
    """The definition before issue 19 (every judgment of the study read into Python), verbatim."""
    first = RESPONSES[study.kind][0]
    rows = list(
        Judgment.objects.filter(item__study=study)
        .exclude(kind=Trial.Kind.PRACTICE)
        .values(
            "worker_id",
            "worker__external_hash",
            "worker__is_simulated",
            "item_id",
            "kind",
            "choice",
            "response",
            "correct",
            "rt_ms",
            "assignment__excluded",
        )
    )
    votes: dict = defaultdict(Counter)
    for r in rows:
        if r["kind"] == Trial.Kind.TEST and not r["assignment__excluded"]:
            votes[r["item_id"]][r["choice"]] += 1
    per: dict = defaultdict(list)
    for r in rows:
        per[r["worker_id"]].append(r)
    excluded = Counter(
        Assignment.objects.filter(study=study, excluded=True).values_list("worker_id", flat=True)
    )
    reviews = {
        r["worker_id"]: r
        for r in WorkerReview.objects.filter(study=study).values(
            "worker_id", "decision", "reason", "decided_at"
        )
    }
    out = []
    for worker_id, items in per.items():
        review = reviews.get(worker_id)
        sentinels = [r for r in items if r["kind"] == Trial.Kind.SENTINEL]
        agree = total = 0
        for r in items:
            if r["kind"] != Trial.Kind.TEST:
                continue
            others = votes[r["item_id"]].copy()
            if not r["assignment__excluded"]:
                others[r["choice"]] -= 1
            if others[0] != others[1]:
                total += 1
                agree += int((others[1] > others[0]) == bool(r["choice"]))
        out.append(
            {
                "worker": items[0]["worker__external_hash"][:16],
                "simulated": items[0]["worker__is_simulated"],
                "judgments": len(items),
                "sentinel_accuracy": sum(1 for r in sentinels if r["correct"]) / len(sentinels)
                if sentinels
                else None,
                f"fraction_{first}": sum(1 for r in items if r["response"] == first) / len(items),
                "median_rt_ms": statistics.median(r["rt_ms"] for r in items),
                "majority_agreement": agree / total if total else None,
                "excluded_assignments": excluded.get(worker_id, 0),
                "review": review["decision"] if review else None,
                "review_reason": review["reason"] if review else "",
                "reviewed_at": review["decided_at"] if review else None,
            }
        )
    idle = (
        Worker.objects.filter(assignments__study=study)
        .exclude(pk__in=list(per))
        .distinct()
        .values("pk", "external_hash", "is_simulated")
    )
    for w in idle:
        review = reviews.get(w["pk"])
        out.append(
            {
                "worker": w["external_hash"][:16],
                "simulated": w["is_simulated"],
                "judgments": 0,
                "sentinel_accuracy": None,
                f"fraction_{first}": None,
                "median_rt_ms": None,
                "majority_agreement": None,
                "excluded_assignments": excluded.get(w["pk"], 0),
                "review": review["decision"] if review else None,
                "review_reason": review["reason"] if review else "",
                "reviewed_at": review["decided_at"] if review else None,
            }
        )
    out.sort(key=lambda w: -w["judgments"])
    return out


def _answer(assignment, w: int, *, limit=None) -> None:
    """Worker w's answers: a pseudo-random screen response per trial (so that items get ties, majorities
    and minorities) and response times with repeats, an even and an odd count among the workers."""
    keys = RESPONSES[assignment.study.kind]
    trials = Trial.objects.filter(assignment=assignment, answered=False).order_by("position")
    for n, trial in enumerate(trials):
        if limit is not None and n >= limit:
            break
        judgment_submit(
            token=assignment.token,
            trial_id=trial.public_id,
            response=keys[(w * 5 + trial.item.index * 3 + w * trial.item.index) % 7 % 2],
            rt_ms=300.0 + 37.5 * ((w * 7 + n * 13) % 5),
            idempotency_key=f"k-{trial.public_id}",
            durations={"ref_ms": 1000, "gap_ms": 250, "distorted_ms": 1000},
            display={"refresh_hz": 60},
        )


def _start(study, w: int) -> Assignment:
    return assignment_start(study=study, platform="anonymous", worker_id=f"worker-{w}").assignment


def _hash(w: int) -> str:
    return worker_hash(platform="anonymous", external_id=f"worker-{w}")[:16]


@pytest.fixture(params=["2afc", "jnd"])
def busy_study(request, make_study, researcher_carol):
    """Seven workers on six shared test items (two sentinels, one practice item): worker-2's HIT is
    excluded, worker-3 rejected, worker-4 approved, worker-5 holds a half-answered HIT, worker-6 has
    answered only the practice trial, and worker-7 has answered nothing."""
    study = make_study(
        kind=request.param,
        n_test=6,
        n_sentinels=2,
        n_practice=1,
        owner=researcher_carol,
        config={"hit_size": 6, "judgments_per_item": {"train": 9, "val": 9}},
    )
    for w in range(5):
        a = _start(study, w)
        _answer(a, w)
        assignment_submit(token=a.token)
    Assignment.objects.filter(study=study, worker__external_hash__startswith=_hash(2)).update(excluded=True)
    worker_review_set(
        study=study, worker_hash=_hash(3), decision="reject", reason="spam", user=researcher_carol
    )
    worker_review_set(study=study, worker_hash=_hash(4), decision="approve", user=researcher_carol)
    _answer(_start(study, 5), 5, limit=5)
    _answer(_start(study, 6), 6, limit=1)
    _start(study, 7)
    return study


def _ordered(rows: list[dict]) -> list[dict]:
    return sorted(rows, key=lambda w: (-w["judgments"], w["worker"]))


def test_it_matches_the_python_definition(busy_study):
    got = worker_stats(study=busy_study)
    want = _ordered(reference_worker_stats(study=busy_study))
    assert got == want
    rows = {w["worker"]: w for w in got}
    # the fixture has what the parity is about: ties left out, an exclusion, reviews, idle workers
    assert rows[_hash(2)]["excluded_assignments"] == 1
    assert rows[_hash(3)]["review"] == "rejected" and rows[_hash(3)]["review_reason"] == "spam"
    assert rows[_hash(6)]["judgments"] == 0 and rows[_hash(7)]["judgments"] == 0
    assert any(0 < (w["majority_agreement"] or 0) < 1 for w in got)
    assert any(w["sentinel_accuracy"] is not None and w["sentinel_accuracy"] < 1 for w in got)
    assert len({w["judgments"] for w in got}) > 2


def test_it_gives_the_histograms_shares_as_worker_stats_does(busy_study):
    first = f"fraction_{RESPONSES[busy_study.kind][0]}"
    want = [
        {"sentinel_accuracy": w["sentinel_accuracy"], first: w[first]}
        for w in worker_stats(study=busy_study)
        if w["judgments"]
    ]
    got = worker_shares(study=busy_study)
    key = lambda w: (w[first], w["sentinel_accuracy"] or -1)  # noqa: E731
    assert len(got) == 6 and sorted(got, key=key) == sorted(want, key=key)


def test_it_pages_in_the_same_order(busy_study):
    every = worker_stats(study=busy_study)
    assert len(every) == 8
    page = worker_stats_page(study=busy_study, page=2, per_page=3)
    assert (page["count"], page["page"], page["pages"]) == (8, 2, 3)
    assert page["results"] == every[3:6]
    assert worker_stats_page(study=busy_study, page=99, per_page=3)["results"] == every[6:]
    assert worker_stats_page(study=busy_study, page=0, per_page=3)["results"] == every[:3]
    one = Worker.objects.get(external_hash__startswith=_hash(4))
    assert worker_stats(study=busy_study, worker_id=one.pk) == [w for w in every if w["worker"] == _hash(4)]


def test_it_lists_nothing_for_a_study_without_workers(make_study):
    study = make_study(n_test=2, n_sentinels=0, n_practice=0)
    assert worker_stats(study=study) == []
    assert worker_stats_page(study=study)["count"] == 0


def test_it_costs_the_same_queries_whatever_the_size(
    make_study, researcher_carol, django_assert_max_num_queries
):
    study = make_study(
        n_test=4,
        n_sentinels=1,
        n_practice=0,
        owner=researcher_carol,
        config={"hit_size": 4, "judgments_per_item": {"train": 30, "val": 30}},
    )

    def grow(workers):
        for w in workers:
            a = _start(study, w)
            _answer(a, w)
            assignment_submit(token=a.token)

    grow(range(2))
    with django_assert_max_num_queries(6):
        small = worker_stats_page(study=study, per_page=50)
    grow(range(2, 14))
    with django_assert_max_num_queries(6):
        big = worker_stats_page(study=study, per_page=50)
    with django_assert_max_num_queries(6):
        worker_stats_page(study=study, page=2, per_page=5)
    assert (small["count"], big["count"]) == (2, 14)
    assert big["results"] == _ordered(reference_worker_stats(study=study))
