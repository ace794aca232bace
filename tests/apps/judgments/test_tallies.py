"""judgments.tallies: the counters each answer keeps on its assignment are the judgments' own counts, through
replays, practice, sentinels, timing flags and QC; the dashboard's per-worker counts and the per-hour chart
read them (and the hour cache) instead of counting every judgment."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone

from dashboard import selectors as dashboard_selectors
from judgments import tallies
from judgments.answers import judgment_submit
from judgments.assignments import assignment_start
from judgments.models import RESPONSES, Assignment, Judgment, Trial
from judgments.qc import assignment_submit
from judgments.selectors import study_stats, study_tallies

pytestmark = pytest.mark.django_db

TIMING = {"ref_ms": 1000, "gap_ms": 250, "distorted_ms": 1000}


def _answer_all(study, w: int, *, off_timing: bool = False) -> Assignment:
    a = assignment_start(study=study, platform="anonymous", worker_id=f"tally-{w}").assignment
    keys = RESPONSES[study.kind]
    for n, trial in enumerate(Trial.objects.filter(assignment=a).order_by("position")):
        durations = dict(TIMING)
        if off_timing and n % 2:
            durations["ref_ms"] = 1400  # far more than a frame off: flagged (JND)
        kwargs = dict(
            token=a.token,
            trial_id=trial.public_id,
            response=keys[(n + w) % 3 % 2],
            rt_ms=500.0,
            idempotency_key=f"k-{trial.public_id}",
            durations=durations,
            display={"refresh_hz": 60},
        )
        judgment_submit(**kwargs)
        judgment_submit(**kwargs)  # a client's retry: the stored answer, nothing counted twice
    return a


@pytest.mark.parametrize("kind", ["2afc", "jnd"])
def test_the_counters_are_the_judgments_own(make_study, kind):
    study = make_study(kind=kind, n_test=8, n_sentinels=3, n_practice=1, config={"hit_size": 6})
    for w in range(3):
        a = _answer_all(study, w, off_timing=True)
        assignment_submit(token=a.token)
    half = assignment_start(study=study, platform="anonymous", worker_id="tally-half").assignment
    trial = Trial.objects.filter(assignment=half).order_by("position").first()
    judgment_submit(
        token=half.token,
        trial_id=trial.public_id,
        response=RESPONSES[kind][0],
        rt_ms=400.0,
        idempotency_key="half-answered",
    )

    assert tallies.mismatches(study_id=study.pk) == {}
    kept = {
        a.pk: {f: getattr(a, f) for f in tallies.FIELDS.values()}
        for a in Assignment.objects.filter(study=study)
    }
    # what the run covered: every counter is non-zero somewhere (JND's flags too); practice not counted
    sums = {f: sum(k[f] for k in kept.values()) for f in tallies.FIELDS.values()}
    assert sums["n_tests"] > 0 and sums["n_sentinels"] > 0 and sums["n_first_key"] > 0
    assert (sums["n_flagged"] > 0) == (kind == "jnd")
    judgments = Judgment.objects.filter(assignment__study=study)
    practice = judgments.filter(kind=Trial.Kind.PRACTICE).count()
    assert practice > 0
    per_worker = study_tallies(study=study)
    assert sum(t["n"] for t in per_worker.values()) == judgments.count() - practice
    stats = study_stats(study=study)
    assert stats["judgments"] == judgments.count() - practice
    assert stats["judgments_last_hour"] == judgments.count() - practice  # all of them were just stored


def test_a_wrong_counter_is_found_and_repaired(make_study):
    study = make_study(n_test=6, n_sentinels=2, n_practice=0, config={"hit_size": 4})
    a = _answer_all(study, 0)
    Assignment.objects.filter(pk=a.pk).update(n_tests=99, n_flagged=3)
    wrong = tallies.mismatches(study_id=study.pk)
    assert list(wrong) == [a.pk] and wrong[a.pk][0]["n_tests"] == 99
    assert tallies.resync(study_id=study.pk) == 1
    assert tallies.mismatches(study_id=study.pk) == {}
    assert tallies.resync(study_id=study.pk) == 0


def test_finished_hours_are_counted_once_and_the_open_hour_on_every_view(make_study, monkeypatch):
    cache.clear()
    study = make_study(n_test=10, n_sentinels=2, n_practice=1, config={"hit_size": 6})
    a = _answer_all(study, 0)
    counted = Judgment.objects.filter(assignment=a).exclude(kind=Trial.Kind.PRACTICE)
    n = counted.count()
    # move the answers two hours back: a finished hour
    past = timezone.now() - timedelta(hours=2)
    Judgment.objects.filter(assignment=a).update(created_at=past)
    first = dashboard_selectors.judgments_per_hour(study=study)
    assert sum(v for _, v in first) == n
    assert first[-3][1] == n  # the hour two hours back
    # a finished hour's count is cached: judgments written into it afterwards (which the answer path never
    # does) are not seen, which shows the count was not read again
    b = _answer_all(study, 1)
    n_b = Judgment.objects.filter(assignment=b).exclude(kind=Trial.Kind.PRACTICE).count()
    Judgment.objects.filter(assignment=b).update(created_at=past)
    second = dashboard_selectors.judgments_per_hour(study=study)
    assert second[-3][1] == n  # cached, not recounted
    cache.clear()
    third = dashboard_selectors.judgments_per_hour(study=study)
    assert third[-3][1] == n + n_b  # recounted from the judgments once the cache is gone
    # the open hour is never cached
    c = _answer_all(study, 2)
    n_c = Judgment.objects.filter(assignment=c).exclude(kind=Trial.Kind.PRACTICE).count()
    fourth = dashboard_selectors.judgments_per_hour(study=study)
    assert fourth[-1][1] == n_c and fourth[-3][1] == n + n_b


def test_an_hour_that_just_ended_is_still_counted_live(make_study, monkeypatch):
    """Within HOUR_FINAL_AFTER of its end an hour may still take judgments (their transactions commit after
    it ended), so it is counted on every view, not cached."""
    cache.clear()
    study = make_study(n_test=10, n_sentinels=2, n_practice=1, config={"hit_size": 6})
    a = _answer_all(study, 0)
    n = Judgment.objects.filter(assignment=a).exclude(kind=Trial.Kind.PRACTICE).count()
    stored = Judgment.objects.filter(assignment=a).earliest("created_at").created_at
    hour = stored.replace(minute=0, second=0, microsecond=0)
    Judgment.objects.filter(assignment=a).update(created_at=hour + timedelta(minutes=30))
    just_after = hour + timedelta(hours=1, minutes=2)  # 2 minutes after this hour ends
    monkeypatch.setattr(dashboard_selectors.timezone, "now", lambda: just_after)
    first = dashboard_selectors.judgments_per_hour(study=study)
    assert first[-2][1] == n
    b = _answer_all(study, 1)  # stored "late" into the hour that just ended
    Judgment.objects.filter(assignment=b).update(created_at=hour + timedelta(minutes=59))
    n_b = Judgment.objects.filter(assignment=b).exclude(kind=Trial.Kind.PRACTICE).count()
    second = dashboard_selectors.judgments_per_hour(study=study)
    assert second[-2][1] == n + n_b


def test_the_chart_counts_every_hour_when_the_cache_fails(make_study, monkeypatch):
    cache.clear()
    study = make_study(n_test=10, n_sentinels=2, n_practice=1, config={"hit_size": 6})
    a = _answer_all(study, 0)
    n = Judgment.objects.filter(assignment=a).exclude(kind=Trial.Kind.PRACTICE).count()
    Judgment.objects.filter(assignment=a).update(created_at=timezone.now() - timedelta(hours=3))

    def down(*args, **kwargs):
        raise ConnectionError("redis is down")

    monkeypatch.setattr(dashboard_selectors.cache, "get_many", down)
    monkeypatch.setattr(dashboard_selectors.cache, "set_many", down)
    assert dashboard_selectors.judgments_per_hour(study=study)[-4][1] == n


def test_the_check_command_finds_and_repairs_wrong_counters(make_study):
    from io import StringIO

    from django.core.management import CommandError, call_command

    study = make_study(n_test=6, n_sentinels=2, n_practice=0, config={"hit_size": 4})
    a = _answer_all(study, 0)
    out = StringIO()
    call_command("tallies_check", stdout=out)
    assert "match" in out.getvalue()
    Assignment.objects.filter(pk=a.pk).update(n_sentinels=7)
    with pytest.raises(SystemExit) as exit_:
        call_command("tallies_check", "--study", str(study.pk), stdout=StringIO())
    assert exit_.value.code == 1
    out = StringIO()
    call_command("tallies_check", "--study", str(study.pk), "--repair", stdout=out)
    assert "1 HIT(s) with wrong counters" in out.getvalue() and "repaired 1" in out.getvalue()
    assert tallies.mismatches(study_id=study.pk) == {}
    for bad in ("not-a-uuid", "00000000-0000-0000-0000-000000000000"):
        with pytest.raises(CommandError, match="no study"):
            call_command("tallies_check", "--study", bad, stdout=StringIO())
