"""Issue 18 attack review: the dashboard's worker review (POST /dashboard/<id>/workers/<hash>/review/, htmx).
The service accepts the hash in any case (it lowers it) and any worker with an assignment in the study, and
writes the decision; only then does the view look for the worker's table row by the hash exactly as sent,
among workers with judgments, and answer 404 when it finds none. The researcher sees an error, yet the
worker is rejected, and a rejection is final. A 404 must mean nothing was written."""

from __future__ import annotations

import pytest
from django.test import Client

from judgments.assignments import assignment_start
from judgments.models import WorkerReview
from judgments.selectors import worker_stats

pytestmark = pytest.mark.django_db


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_it_writes_no_rejection_when_the_htmx_reply_is_404_for_an_upper_case_hash(
    researcher_carol, make_study, crowd
):
    study = make_study(owner=researcher_carol, n_test=20)
    crowd(study, 2, lambda trial, item: "p0")
    worker = worker_stats(study=study)[0]["worker"]
    response = _client(researcher_carol).post(
        f"/dashboard/{study.pk}/workers/{worker.upper()}/review/",
        {"decision": "reject", "reason": "spam"},
        HTTP_HX_REQUEST="true",
    )
    rejected = WorkerReview.objects.filter(study=study, decision=WorkerReview.Decision.REJECTED).count()
    assert not (response.status_code == 404 and rejected), (
        "the page answered 404 (nothing happened, it says) but the worker is rejected for good"
    )
    assert response.status_code == 200 and rejected == 1


def test_it_writes_no_rejection_when_the_htmx_reply_is_404_for_a_worker_without_judgments(
    researcher_carol, make_study
):
    study = make_study(owner=researcher_carol, n_test=20)
    assignment = assignment_start(study=study, platform="anonymous", worker_id="silent-1").assignment
    worker = assignment.worker.external_hash[:16]
    response = _client(researcher_carol).post(
        f"/dashboard/{study.pk}/workers/{worker}/review/",
        {"decision": "reject", "reason": "no answers"},
        HTTP_HX_REQUEST="true",
    )
    rejected = WorkerReview.objects.filter(study=study).exists()
    assert not (response.status_code == 404 and rejected), (
        "the page answered 404 but the worker was rejected (and their started HIT too)"
    )
