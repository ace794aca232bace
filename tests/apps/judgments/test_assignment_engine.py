"""The assignment engine: overlap, breadth-first filling, leases, sentinels and practice.
Each test is one of the known bugs of other tools (docs/design-notes.md, "Assignment"), turned around."""

from datetime import timedelta

import pytest
from django.utils import timezone

from core.exceptions import ApplicationError
from judgments.assignments import assignment_heartbeat, assignment_return, assignment_start
from judgments.models import Assignment, Trial, Worker
from judgments.workers import worker_hash
from studies.models import Study

pytestmark = pytest.mark.django_db


def start(study, worker, **kw):
    return assignment_start(study=study, platform="anonymous", worker_id=worker, **kw).assignment


def leased_items(assignment):
    return list(assignment.trials.filter(kind="test").values_list("item__index", flat=True))


def test_it_serves_an_overlap_5_item_to_five_distinct_workers_and_then_nobody(make_study):
    # label-studio #6233/#1052: the second annotator's queue was empty with overlap > 1
    study = make_study(
        n_test=1, n_sentinels=0, n_practice=0, config={"judgments_per_item": {"train": 5, "val": 5}}
    )
    for n in range(5):
        assert len(leased_items(start(study, f"w{n}"))) == 1
    with pytest.raises(ApplicationError) as err:
        start(study, "w5")
    assert err.value.status_code == 409 and err.value.extra["code"] == "no_work"


def test_it_never_serves_a_worker_the_same_item_twice(make_study, answer_trials, truthful):
    study = make_study(
        n_test=6,
        n_sentinels=0,
        n_practice=0,
        config={"hit_size": 3, "judgments_per_item": {"train": 3, "val": 3}},
    )
    seen = []
    for _ in range(2):
        a = start(study, "alice")
        seen += leased_items(a)
        answer_trials(a, truthful)
        from judgments.qc import assignment_submit

        assignment_submit(token=a.token)
    assert sorted(seen) == sorted(set(seen)) and len(seen) == 6
    with pytest.raises(ApplicationError):
        start(study, "alice")  # every item already judged by alice


def test_it_fills_breadth_first(make_study):
    study = make_study(
        n_test=10,
        n_sentinels=0,
        n_practice=0,
        config={"hit_size": 5, "judgments_per_item": {"train": 2, "val": 2}},
    )
    a, b, c = (set(leased_items(start(study, w))) for w in ("a", "b", "c"))
    assert a.isdisjoint(b) and len(a | b) == 10  # everyone's first judgment before anyone's second
    assert len(c) == 5 and c <= a | b  # then items at the lowest load again (ties broken at random)


def test_an_expired_lease_frees_its_items_without_any_sweep(make_study):
    # label-studio #4781: expired locks were never cleared
    study = make_study(
        n_test=2, n_sentinels=0, n_practice=0, config={"judgments_per_item": {"train": 1, "val": 1}}
    )
    held = start(study, "slow")
    with pytest.raises(ApplicationError):
        start(study, "other")  # "no tasks" only because of the live lease...
    Assignment.objects.filter(pk=held.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert sorted(leased_items(start(study, "other"))) == [0, 1]  # ...and its expiry frees them at once
    with pytest.raises(ApplicationError) as err:
        assignment_heartbeat(token=held.token)
    assert err.value.status_code == 410


def test_heartbeats_extend_the_lease(make_study):
    study = make_study(n_test=2, n_sentinels=0, n_practice=0, config={"lease_ttl_s": 60})
    a = start(study, "w")
    Assignment.objects.filter(pk=a.pk).update(lease_expires_at=timezone.now() + timedelta(seconds=5))
    renewed = assignment_heartbeat(token=a.token)
    assert renewed.lease_expires_at > timezone.now() + timedelta(seconds=55)


def test_a_fast_worker_keeps_receiving_work_while_slow_workers_hold_leases(
    make_study, answer_trials, truthful
):
    # Prodigy /t/7179: the fast annotator starved
    from judgments.qc import assignment_submit

    study = make_study(
        n_test=12,
        n_sentinels=0,
        n_practice=0,
        config={"hit_size": 2, "judgments_per_item": {"train": 1, "val": 1}},
    )
    start(study, "slow1")
    start(study, "slow2")
    got = 0
    for _ in range(4):
        a = start(study, "fast")
        got += len(leased_items(a))
        answer_trials(a, truthful)
        assignment_submit(token=a.token)
    assert got == 8


def test_a_returned_assignment_releases_its_items_and_keeps_its_answers(make_study, answer_trials, truthful):
    study = make_study(
        n_test=3,
        n_sentinels=0,
        n_practice=0,
        config={"hit_size": 3, "judgments_per_item": {"train": 1, "val": 1}},
    )
    a = start(study, "quitter")
    answer_trials(a, truthful, limit=1)
    assignment_return(token=a.token)
    b = start(study, "next")
    assert len(leased_items(b)) == 2  # the answered item is full, the other two are free again
    assert Assignment.objects.get(pk=a.pk).status == "returned"


def test_a_worker_resumes_the_same_assignment(make_study):
    study = make_study(n_test=5, n_sentinels=3, n_practice=2)
    first = assignment_start(study=study, platform="anonymous", worker_id="w")
    again = assignment_start(study=study, platform="anonymous", worker_id="w")
    assert first.created and not again.created and first.assignment.pk == again.assignment.pk


def test_hits_hold_practice_first_then_tests_with_15_sentinels_mixed_in(make_study):
    study = make_study(n_test=100, n_sentinels=20, n_practice=4)
    a = start(study, "w")
    kinds = list(a.trials.order_by("position").values_list("kind", flat=True))
    assert kinds[:4] == ["practice"] * 4
    assert kinds.count("test") == 85 and kinds.count("sentinel") == 15  # docs/science.md, "2AFC task"
    assert "sentinel" in kinds[4:40] or "sentinel" in kinds[40:]  # mixed in, not appended as a block
    swaps = list(a.trials.values_list("swap", flat=True))
    assert abs(sum(swaps) - len(swaps) / 2) <= 0.5  # left/right balanced within the HIT


def test_jnd_hits_hold_20_percent_sentinels(make_study):
    study = make_study(kind="jnd", n_test=200, n_sentinels=50, n_practice=10)
    kinds = list(start(study, "w").trials.values_list("kind", flat=True))
    assert kinds.count("test") == 160 and kinds.count("sentinel") == 40 and kinds.count("practice") == 10


def test_small_hits_get_proportionally_fewer_sentinels(make_study):
    study = make_study(n_test=17, n_sentinels=15, n_practice=0)
    kinds = list(start(study, "w").trials.values_list("kind", flat=True))
    assert kinds.count("test") == 17 and kinds.count("sentinel") == 3


def test_inactive_studies_take_no_work(make_study):
    study = make_study(n_test=2, active=False)
    with pytest.raises(ApplicationError) as err:
        start(study, "w")
    assert err.value.status_code == 409 and err.value.extra["code"] == "study_inactive"
    Study.objects.filter(pk=study.pk).update(status="paused")
    study.refresh_from_db()
    with pytest.raises(ApplicationError):
        start(study, "w")


def test_worker_ids_are_stored_only_as_salted_hashes(make_study, settings):
    study = make_study(n_test=2)
    assignment_start(
        study=study,
        platform="prolific",
        worker_id="5f1e2d3c4b5a69788796a5b4",
        platform_info={"study_id": "S1", "session_id": "SESS1"},
    )
    worker = Worker.objects.get()
    assert "5f1e2d3c4b5a69788796a5b4" not in str(Worker.objects.values().get())
    assert "5f1e2d3c4b5a69788796a5b4" not in str(Assignment.objects.values().get())
    assert worker.external_hash == worker_hash(platform="prolific", external_id="5f1e2d3c4b5a69788796a5b4")
    settings.WORKER_ID_SALT = "another-deployment"
    assert worker.external_hash != worker_hash(platform="prolific", external_id="5f1e2d3c4b5a69788796a5b4")


def test_next_batch_query_count_does_not_grow_with_the_study(make_study, django_assert_max_num_queries):
    # label-studio #9637: next-task queries slow down with the number of tasks
    small = make_study(n_test=10, n_sentinels=5, n_practice=2, name="small")
    big = make_study(n_test=400, n_sentinels=5, n_practice=2, name="big")
    start(small, "warm")  # creates the worker row path once
    with django_assert_max_num_queries(18):
        start(small, "w1")
    with django_assert_max_num_queries(18):
        start(big, "w2")


def test_trials_of_a_returned_hit_do_not_count_as_leases(make_study):
    study = make_study(
        n_test=1, n_sentinels=0, n_practice=0, config={"judgments_per_item": {"train": 1, "val": 1}}
    )
    a = start(study, "a")
    assignment_return(token=a.token)
    assert Trial.objects.filter(assignment=a).count() == 1
    start(study, "b")


def test_open_lease_counts_stay_exact_through_every_transition(make_study, answer_trials, truthful):
    """Item.n_open (the engine's denormalised lease count) always equals the unanswered test trials of
    started assignments, through starts, answers, submissions, returns, expiries and the sweep."""
    import random

    from judgments.assignments import assignments_expire_stale
    from judgments.qc import assignment_submit
    from judgments.selectors import open_leases
    from studies.models import Item

    def check():
        counts = dict(Item.objects.filter(study=study).values_list("pk", "n_open"))
        assert {k: v for k, v in counts.items() if v} == open_leases(study=study)

    study = make_study(
        n_test=30,
        n_sentinels=3,
        n_practice=1,
        config={"hit_size": 6, "judgments_per_item": {"train": 3, "val": 3}},
    )
    rng = random.Random(7)
    live = []
    for _ in range(60):
        action = rng.choice(["start", "start", "answer", "submit", "return", "expire", "sweep"])
        try:
            if action == "start":
                live.append(start(study, f"w{rng.randrange(12)}"))
            elif live and action == "answer":
                a = rng.choice(live)
                answer_trials(a, truthful, limit=rng.randint(1, 4))
            elif live and action == "submit":
                a = live.pop(rng.randrange(len(live)))
                answer_trials(a, truthful)
                assignment_submit(token=a.token)
            elif live and action == "return":
                assignment_return(token=live.pop(rng.randrange(len(live))).token)
            elif live and action == "expire":
                a = live.pop(rng.randrange(len(live)))
                Assignment.objects.filter(pk=a.pk).update(
                    lease_expires_at=timezone.now() - timedelta(seconds=1)
                )
            elif action == "sweep":
                assignments_expire_stale()
        except ApplicationError:
            pass  # no work, an expired HIT, ... are fine; the counts must still hold
        check()  # (an expired lease counts, as its assignment, until a start or the sweep expires it)
    assignments_expire_stale(now=timezone.now() + timedelta(days=1))
    check()
    assert not Item.objects.filter(study=study, n_open__gt=0).exists()
