"""Judgment submission: idempotent, validated, side mapping, counters; completion and QC."""

import pytest

from core.exceptions import ApplicationError
from judgments.answers import judgment_submit, timing_flagged
from judgments.assignments import assignment_start
from judgments.models import Assignment, Judgment, Trial
from judgments.qc import assignment_submit
from studies.models import Item

pytestmark = pytest.mark.django_db


def begin(study, worker="w", **kw):
    return assignment_start(study=study, platform="anonymous", worker_id=worker, **kw).assignment


def first_test(assignment):
    return assignment.trials.filter(kind="test").select_related("item").first()


def submit(assignment, trial, response="left", key="key-0001", **kw):
    return judgment_submit(
        token=assignment.token,
        trial_id=trial.public_id,
        response=response,
        rt_ms=850,
        idempotency_key=key,
        **kw,
    )


def test_retried_posts_with_the_same_key_create_one_row_and_count_once(make_study):
    study = make_study(n_test=3, n_sentinels=0, n_practice=0)
    a = begin(study)
    trial = first_test(a)
    first = submit(a, trial)
    again = submit(a, trial)
    assert first.created and not again.created and first.judgment.pk == again.judgment.pk
    assert Judgment.objects.count() == 1
    assert Item.objects.get(pk=trial.item_id).n_judgments == 1
    assert Assignment.objects.get(pk=a.pk).n_answered == 1


def test_a_second_answer_to_an_answered_trial_is_refused(make_study):
    study = make_study(n_test=3, n_sentinels=0, n_practice=0)
    a = begin(study)
    trial = first_test(a)
    submit(a, trial, key="key-aaaa")
    with pytest.raises(ApplicationError) as err:
        submit(a, trial, response="right", key="key-bbbb")
    assert err.value.status_code == 409
    assert Judgment.objects.get().response == "left"


def test_a_key_reused_for_another_trial_is_refused(make_study):
    study = make_study(n_test=3, n_sentinels=0, n_practice=0)
    a = begin(study)
    t0, t1 = a.trials.all()[:2]
    submit(a, t0, key="key-same")
    with pytest.raises(ApplicationError) as err:
        submit(a, t1, key="key-same")
    assert err.value.status_code == 409


@pytest.mark.parametrize(
    "swap,response,choice,left",
    [(False, "left", 0, "p0"), (False, "right", 1, "p0"), (True, "left", 1, "p1"), (True, "right", 0, "p1")],
)
def test_screen_sides_map_to_the_stored_p0_p1_choice(make_study, swap, response, choice, left):
    # label-studio #1864/#5649: the pairwise template saved the wrong side
    study = make_study(n_test=1, n_sentinels=0, n_practice=0)
    a = begin(study)
    trial = first_test(a)
    Trial.objects.filter(pk=trial.pk).update(swap=swap)
    j = submit(a, trial, response=response).judgment
    assert (j.choice, j.presented_left, j.response) == (choice, left, response)


@pytest.mark.parametrize(
    "bad,field",
    [({"response": "up"}, "response"), ({"rt_ms": -1}, "rt_ms"), ({"key": "short"}, "idempotency_key")],
)
def test_invalid_answers_are_rejected_with_the_field_named(make_study, bad, field):
    study = make_study(n_test=1, n_sentinels=0, n_practice=0)
    a = begin(study)
    trial = first_test(a)
    kw = {"response": "left", "key": "key-00001", "rt_ms": 500, **bad}
    with pytest.raises(ApplicationError) as err:
        judgment_submit(
            token=a.token,
            trial_id=trial.public_id,
            response=kw["response"],
            rt_ms=kw["rt_ms"],
            idempotency_key=kw["key"],
        )
    assert err.value.status_code == 400 and err.value.extra["field"] == field
    assert not Judgment.objects.exists()


def test_a_trial_of_another_assignment_is_rejected(make_study):
    study = make_study(n_test=4, n_sentinels=0, n_practice=0, config={"hit_size": 2})
    a, b = begin(study, "a"), begin(study, "b")
    with pytest.raises(ApplicationError) as err:
        submit(a, first_test(b))
    assert err.value.status_code == 400


def test_submitted_and_unknown_assignments_take_no_answers(make_study, answer_trials, truthful):
    study = make_study(n_test=2, n_sentinels=0, n_practice=0)
    a = begin(study)
    answer_trials(a, truthful)
    assignment_submit(token=a.token)
    trial = a.trials.first()
    with pytest.raises(ApplicationError) as err:
        submit(a, trial, key="key-late-1")
    assert err.value.status_code == 409
    with pytest.raises(ApplicationError) as err:
        judgment_submit(
            token="nope", trial_id=trial.public_id, response="left", rt_ms=1, idempotency_key="key-00002"
        )
    assert err.value.status_code == 404


def test_completion_is_refused_until_every_trial_is_stored(make_study, answer_trials, truthful):
    study = make_study(n_test=4, n_sentinels=2, n_practice=1)
    a = begin(study)
    answer_trials(a, truthful, limit=3)
    with pytest.raises(ApplicationError) as err:
        assignment_submit(token=a.token)
    assert err.value.status_code == 409 and err.value.extra["code"] == "incomplete"
    answer_trials(a, truthful)
    done = assignment_submit(token=a.token)
    assert done.status == "submitted" and done.completion_code and not done.excluded
    assert assignment_submit(token=a.token).pk == done.pk  # idempotent


def test_the_exclusion_rule_flags_a_worker_who_fails_sentinels_and_reopens_their_items(
    make_study, answer_trials
):
    study = make_study(
        n_test=20, n_sentinels=15, n_practice=0, config={"judgments_per_item": {"train": 1, "val": 1}}
    )
    a = begin(study, "spammer")

    def wrong_on_sentinels(trial, item):
        return {"p0": "p1", "p1": "p0"}[item.expected] if item.expected else "p1"

    answer_trials(a, wrong_on_sentinels)
    assert Item.objects.filter(study=study, role="test", n_judgments=1).count() == 20
    done = assignment_submit(token=a.token)
    assert done.excluded and done.qc["sentinels"] == 4 and done.qc["sentinels_correct"] == 0  # 15 x 20/85
    assert "sentinel accuracy" in done.qc["reasons"][0]
    assert Judgment.objects.filter(assignment=a).count() == 24  # kept, flagged through the assignment
    assert not Item.objects.filter(study=study, role="test", n_judgments__gt=0).exists()  # reopened
    assert len(begin(study, "honest").trials.filter(kind="test")) == 20


def test_14_of_15_sentinels_pass_the_default_rule(make_study, answer_trials):
    study = make_study(n_test=85, n_sentinels=15, n_practice=0)
    a = begin(study)
    missed = []

    def one_miss(trial, item):
        if item.expected and not missed:
            missed.append(item)
            return {"p0": "p1", "p1": "p0"}[item.expected]
        return item.expected or "p0"

    answer_trials(a, one_miss)
    done = assignment_submit(token=a.token)
    assert done.qc["sentinels_correct"] == 14 and not done.excluded


def test_practice_trials_are_stored_but_not_counted(make_study, answer_trials, truthful):
    study = make_study(n_test=2, n_sentinels=1, n_practice=3)
    a = begin(study)
    answer_trials(a, truthful)
    assert Judgment.objects.filter(kind="practice").count() == 3
    assert all(j.correct for j in Judgment.objects.filter(kind="practice"))
    assert sum(Item.objects.filter(study=study).values_list("n_judgments", flat=True)) == 2


def test_jnd_trials_off_by_more_than_a_frame_are_flagged(make_study):
    timing = {"ref_ms": 1000, "gap_ms": 250, "distorted_ms": 1000}
    assert not timing_flagged(
        timing=timing,
        durations={"ref_ms": 1008, "gap_ms": 241, "distorted_ms": 1000},
        display={"refresh_hz": 60},
    )
    assert timing_flagged(
        timing=timing,
        durations={"ref_ms": 1000, "gap_ms": 275, "distorted_ms": 1000},
        display={"refresh_hz": 60},
    )
    assert timing_flagged(
        timing=timing,
        durations={"ref_ms": 1010, "gap_ms": 250, "distorted_ms": 1000},
        display={"refresh_hz": 144},
    )  # one 144 Hz frame is 6.9 ms
    assert timing_flagged(timing=timing, durations={}, display={})
    study = make_study(kind="jnd", n_test=2, n_sentinels=0, n_practice=0)
    a = begin(study)
    t = first_test(a)
    j = submit(
        a,
        t,
        response="same",
        durations={"ref_ms": 1000, "gap_ms": 300, "distorted_ms": 1000},
        display={"refresh_hz": 60},
    ).judgment
    assert j.timing_flagged and j.choice == 1


def test_submit_query_count_is_small_and_constant(make_study, django_assert_max_num_queries):
    study = make_study(n_test=300, n_sentinels=15, n_practice=0)
    a = begin(study)
    trials = list(a.trials.all()[:2])
    with django_assert_max_num_queries(12):
        submit(a, trials[0], key="key-q-0001")


def test_answers_renew_the_lease_once_half_of_it_is_gone(make_study):
    from datetime import timedelta

    from django.utils import timezone

    study = make_study(n_test=4, n_sentinels=0, n_practice=0, config={"lease_ttl_s": 900})
    a = begin(study)
    trials = list(a.trials.filter(kind="test").order_by("position"))
    first = Assignment.objects.get(pk=a.pk)
    assert first.lease_expires_at < timezone.now() + timedelta(
        seconds=301
    )  # the short first lease (FIRST_LEASE_S)
    assert first.last_answer_at is None
    submit(a, trials[0], key="key-0000")  # the first answer gives the full lease (less than half was left)
    fresh = Assignment.objects.get(pk=a.pk)
    assert (
        fresh.lease_expires_at > timezone.now() + timedelta(seconds=890) and fresh.last_answer_at is not None
    )
    submit(a, trials[1], key="key-0001")
    after = Assignment.objects.get(pk=a.pk)
    assert (
        after.lease_expires_at == fresh.lease_expires_at and after.n_answered == 2
    )  # plenty left: untouched
    assert (
        after.last_answer_at > fresh.last_answer_at
    )  # every answer is noted (unindexed: still a HOT update)
    Assignment.objects.filter(pk=a.pk).update(lease_expires_at=timezone.now() + timedelta(seconds=120))
    submit(a, trials[2], key="key-0002")
    after = Assignment.objects.get(pk=a.pk)
    assert after.lease_expires_at > timezone.now() + timedelta(seconds=890) and after.n_answered == 3
    item = Item.objects.get(pk=trials[2].item_id)
    assert (item.n_judgments, item.n_open) == (1, 0)  # the lease became a judgment


@pytest.mark.parametrize("every, sent", [(10, 1), (None, 0)])
def test_a_test_judgment_sends_judgment_accepted_after_commit_in_studies_that_train(
    make_study, django_capture_on_commit_callbacks, every, sent
):
    from judgments.signals import judgment_accepted

    study = make_study(n_test=3, n_sentinels=0, n_practice=0, config={"training": {"every": every}})
    a = begin(study)
    received = []

    def receiver(sender, study_id, n, **kwargs):
        received.append((study_id, n))

    judgment_accepted.connect(receiver, dispatch_uid="test-judgment-accepted")
    try:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            submit(a, first_test(a))
        assert received == []  # nothing before the commit
        assert len(callbacks) == sent  # a study that does not train registers nothing (and pays no reads)
        for callback in callbacks:
            callback()
    finally:
        judgment_accepted.disconnect(dispatch_uid="test-judgment-accepted")
    assert received == [(study.pk, 1)] * sent


def test_a_batch_announces_its_test_judgments_once_with_their_number(
    make_study, django_capture_on_commit_callbacks
):
    from judgments.answers import answer_input, judgments_submit_batch
    from judgments.signals import judgment_accepted

    study = make_study(n_test=3, n_sentinels=2, n_practice=0, config={"training": {"every": 10}})
    a = begin(study)
    received = []

    def receiver(sender, study_id, n, **kwargs):
        received.append((study_id, n))

    answers = [
        answer_input(
            {"trial": t.public_id, "response": "left", "rt_ms": 500, "idempotency_key": f"key-n-{k:04d}"}
        )
        for k, t in enumerate(a.trials.order_by("position"))
    ]
    judgment_accepted.connect(receiver, dispatch_uid="test-judgment-accepted-n")
    try:
        with django_capture_on_commit_callbacks(execute=True):
            judgments_submit_batch(token=a.token, answers=answers)
    finally:
        judgment_accepted.disconnect(dispatch_uid="test-judgment-accepted-n")
    tests = a.trials.filter(kind="test").count()
    assert tests >= 2 and received == [(study.pk, tests)]  # sentinels are not counted
