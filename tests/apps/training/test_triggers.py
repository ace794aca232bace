"""training.triggers.judgment_announced: the answer path's retrain trigger checks the database only when a
retrain may be due. Within a process the N-th judgment still queues exactly one retrain; judgments counted
elsewhere (another web process) are seen once the hold ends; a queued study is not read on every answer."""

import pytest
from django.db.models import F

from studies.models import Item
from training import triggers
from training.models import TrainingState

pytestmark = pytest.mark.django_db


@pytest.fixture
def study(make_study):
    return make_study(n_test=10, n_sentinels=0, n_practice=0, config={"training": {"every": 5}})


def _accept(study, n: int) -> None:
    """n more accepted judgments, as answers leave them (each item's n_judgments)."""
    items = list(Item.objects.filter(study=study, role="test").order_by("index").values_list("pk", flat=True))
    for k in range(n):
        Item.objects.filter(pk=items[k % len(items)]).update(n_judgments=F("n_judgments") + 1)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(triggers.time, "monotonic", c)
    return c


def test_the_nth_judgment_checks_and_the_ones_before_it_read_nothing(
    study, clock, captured_tasks, django_assert_num_queries
):
    _accept(study, 1)
    assert not triggers.judgment_announced(study_id=study.pk)  # 4 more needed: held
    for _ in range(3):  # the 2nd to 4th judgments: nothing can be due, nothing is read
        _accept(study, 1)
        with django_assert_num_queries(0):
            assert not triggers.judgment_announced(study_id=study.pk)
    _accept(study, 1)
    assert triggers.judgment_announced(study_id=study.pk)  # the 5th: checked, queued
    assert TrainingState.objects.get(study=study).queued
    # queued: the following answers are held too, whatever their number, until the hold ends
    for _ in range(20):
        with django_assert_num_queries(0):
            assert not triggers.judgment_announced(study_id=study.pk)


def test_a_batch_announces_its_judgments_at_once(study, clock, captured_tasks, django_assert_num_queries):
    """A batch of answers commits once and announces its n test judgments together: the hold counts them
    all, so the judgment that makes the N-th still checks."""
    _accept(study, 1)
    assert not triggers.judgment_announced(study_id=study.pk)  # 4 more needed: held
    _accept(study, 3)
    with django_assert_num_queries(0):
        assert not triggers.judgment_announced(study_id=study.pk, n=3)  # 1 more needed
    _accept(study, 2)
    assert triggers.judgment_announced(study_id=study.pk, n=2)  # past the 5th: checked, queued
    assert TrainingState.objects.get(study=study).queued


def test_judgments_counted_by_another_process_are_seen_when_the_hold_ends(study, clock, captured_tasks):
    _accept(study, 1)
    assert not triggers.judgment_announced(study_id=study.pk)  # held: 4 more needed
    _accept(study, 10)  # another web process stored these (its own announcements, not this one's)
    assert not triggers.judgment_announced(study_id=study.pk)  # still inside the hold
    clock.now += triggers.HOLD_S + 0.1
    assert triggers.judgment_announced(study_id=study.pk)  # the hold ended: checked, due, queued
    assert TrainingState.objects.get(study=study).queued


def test_the_retrain_interval_holds_for_its_seconds_at_most_the_cap(study, clock, settings, captured_tasks):
    from django.utils import timezone

    settings.PERCEPTLAB_MIN_RETRAIN_INTERVAL_S = 300
    TrainingState.objects.create(study=study, last_run_at=timezone.now(), last_judgments=0)
    _accept(study, 50)
    assert not triggers.judgment_announced(study_id=study.pk)  # inside the interval: held, not due
    clock.now += triggers.HOLD_S + 1
    assert triggers._holds[study.pk][0] > clock.now  # the interval's hold is longer than HOLD_S ...
    clock.now += triggers.HOLD_MAX_S
    assert triggers._holds[study.pk][0] <= clock.now  # ... and at most HOLD_MAX_S
    assert captured_tasks == []
