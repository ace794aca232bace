"""Attack: a database dump (a leaked backup, a compromised server) long after a study ended still holds
every participant's browser user agent, display profile, exact client clock and platform session ids.
`manage.py purge_participant_data` deletes them for a study's rows before a date; answers stay."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from judgments.answers import judgment_submit
from judgments.assignments import assignment_start
from judgments.models import Assignment, Judgment
from judgments.qc import assignment_submit

pytestmark = pytest.mark.django_db
UA = "Mozilla/5.0 (Macintosh) Safari/605 unique-7731"


def run_hit(study, n):
    a = assignment_start(
        study=study,
        platform="prolific",
        worker_id=f"PID-{n}",
        platform_info={"study_id": "S", "session_id": f"SESSION-{n}"},
    ).assignment
    for k, trial in enumerate(a.trials.order_by("position")):
        shown = 1_764_000_000_000.0 + n * 1e6 + k * 1000
        judgment_submit(
            token=a.token,
            trial_id=trial.public_id,
            response="left",
            rt_ms=800,
            idempotency_key=f"retention-{n}-{k}",
            client_shown_at=shown,
            client_answered_at=shown + 800,
            display={"screen": [1920, 1080], "device_pixel_ratio": 2, "refresh_hz": 60, "user_agent": UA},
        )
    return assignment_submit(token=a.token)


def test_old_participant_data_can_be_purged(make_study):
    study = make_study(n_test=6, n_sentinels=1, n_practice=0, config={"hit_size": 2})
    old, recent = run_hit(study, 1), run_hit(study, 2)
    Judgment.objects.filter(assignment=old).update(created_at=timezone.now() - timedelta(days=400))
    Assignment.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=400))
    cutoff = (timezone.now() - timedelta(days=365)).date().isoformat()
    out = io.StringIO()
    call_command(
        "purge_participant_data",
        str(study.pk),
        "--before",
        cutoff,
        "--client-times",
        "--session-ids",
        stdout=out,
    )
    assert "judgments" in out.getvalue()
    purged = list(Judgment.objects.filter(assignment=old).order_by("client_shown_at"))
    assert purged and all(
        j.display == {"screen": [1920, 1080], "device_pixel_ratio": 2, "refresh_hz": 60} for j in purged
    )
    assert [j.client_shown_at for j in purged] == [1000.0 * k for k in range(len(purged))]
    assert all(j.client_answered_at == j.client_shown_at + 800 for j in purged)
    assert Assignment.objects.get(pk=old.pk).platform_info == {}
    # rows after the date are untouched, and the answers themselves stay
    assert all(
        j.display.get("user_agent") == UA and j.client_shown_at > 1e12
        for j in Judgment.objects.filter(assignment=recent)
    )
    assert Assignment.objects.get(pk=recent.pk).platform_info["session_id"] == "SESSION-2"
    assert Judgment.objects.filter(assignment=old, response="left", rt_ms=800).count() == len(purged)
    # again: nothing left to change; --display clears the profile
    call_command("purge_participant_data", str(study.pk), "--before", cutoff, "--client-times", stdout=out)
    assert [
        j.client_shown_at for j in Judgment.objects.filter(assignment=old).order_by("client_shown_at")
    ] == [1000.0 * k for k in range(len(purged))]
    call_command("purge_participant_data", str(study.pk), "--before", cutoff, "--display", stdout=out)
    assert all(j.display == {} for j in Judgment.objects.filter(assignment=old))


def test_bad_arguments_are_clear_errors(make_study):
    study = make_study(n_test=2, n_sentinels=1, n_practice=0)
    with pytest.raises(CommandError, match="not a date"):
        call_command("purge_participant_data", str(study.pk), "--before", "last year")
    with pytest.raises(CommandError, match="no study"):
        call_command("purge_participant_data", "not-a-uuid", "--before", "2025-01-01")
