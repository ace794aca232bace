"""The researcher dashboard: login, ownership, charts, actions."""

import re

import pytest

from exports.models import Export

pytestmark = pytest.mark.django_db


@pytest.fixture
def carols_study(make_study, researcher_carol):
    return make_study(owner=researcher_carol, n_test=6, n_sentinels=2, n_practice=1)


def test_it_requires_a_login_and_hides_other_researchers_studies(client, carols_study, researcher_dave):
    r = client.get(f"/dashboard/{carols_study.pk}/")
    assert r.status_code == 302 and "/accounts/login/" in r["Location"]
    client.force_login(researcher_dave)
    assert client.get(f"/dashboard/{carols_study.pk}/").status_code == 404
    assert carols_study.name not in client.get("/dashboard/").content.decode()
    assert client.post(f"/dashboard/{carols_study.pk}/pause/").status_code == 404


def test_it_renders_progress_and_qc_charts_before_any_evaluation(
    client, carols_study, researcher_carol, answer_trials, truthful
):
    from judgments.assignments import assignment_start

    answer_trials(
        assignment_start(study=carols_study, platform="anonymous", worker_id="w").assignment, truthful
    )
    client.force_login(researcher_carol)
    html = client.get(f"/dashboard/{carols_study.pk}/").content.decode()
    assert re.findall(r'<svg class="chart (\w+)', html) == ["bars", "columns", "hist", "hist"]
    assert "No evaluation yet" in html and "PROLIFIC_PID={{%PROLIFIC_PID%}}" in html
    assert carols_study.collection["completion_code"] in html


def test_actions_pause_start_and_export(
    client, carols_study, researcher_carol, captured_tasks, django_capture_on_commit_callbacks
):
    client.force_login(researcher_carol)
    assert client.post(f"/dashboard/{carols_study.pk}/pause/").status_code == 302
    carols_study.refresh_from_db()
    assert carols_study.status == "paused"
    client.post(f"/dashboard/{carols_study.pk}/start/")
    carols_study.refresh_from_db()
    assert carols_study.status == "active"
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/dashboard/{carols_study.pk}/export/", {"include_excluded": "1"})
    export = Export.objects.get()
    assert export.include_excluded and captured_tasks == [("exports.export_build", (str(export.pk),), {})]


def test_forms_need_a_csrf_token(carols_study, researcher_carol):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(researcher_carol)
    assert client.post(f"/dashboard/{carols_study.pk}/pause/").status_code == 403


def test_pages_send_security_headers(client, carols_study):
    r = client.get(f"/s/{carols_study.pk}/")
    assert (
        "frame-ancestors 'self' https://www.mturk.com https://workersandbox.mturk.com"
        in r["Content-Security-Policy"]
    )
    assert "X-Frame-Options" not in r  # MTurk frames the annotator page
    home = client.get("/")
    assert "frame-ancestors 'none'" in home["Content-Security-Policy"] and home["X-Frame-Options"] == "DENY"
    assert "script-src 'self'" in home["Content-Security-Policy"]
    assert home["X-Content-Type-Options"] == "nosniff" and home["Referrer-Policy"] == "same-origin"
    assert "camera=()" in home["Permissions-Policy"]
