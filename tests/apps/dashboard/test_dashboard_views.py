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


def test_the_study_page_writes_the_rule_in_words_and_percentages_with_one_decimal(
    client, make_study, researcher_carol, answer_trials
):
    import uuid

    from judgments.assignments import assignment_start
    from judgments.qc import assignment_submit
    from training.models import Evaluation

    study = make_study(owner=researcher_carol, n_test=30, n_sentinels=15, n_practice=0)
    for w in range(3):
        a = assignment_start(study=study, platform="anonymous", worker_id=f"w{w}").assignment
        answer_trials(a, lambda t, i, w=w: i.expected if i.expected and i.index % 3 != w else "p0")
        assignment_submit(token=a.token)
    run = uuid.uuid4()
    for metric, score in (("alex-kmeans untrained (init heads)", 2 / 3), ("l2_lab", 0.61234)):
        Evaluation.objects.create(
            study=study,
            run=run,
            metric=metric,
            measure="2afc",
            split="val",
            category="all",
            score=score,
            ci_low=score - 0.0312,
            ci_high=score + 0.0312,
            n_items=15,
            n_judgments=90,
        )
    client.force_login(researcher_carol)
    html = client.get(f"/dashboard/{study.pk}/").content.decode()
    text = re.sub(r"<[^>]+>", " ", html).replace("\u00a0", " ")
    assert "An assignment is excluded when fewer than 14 of its 15 sentinels are right (below 93.3 %" in text
    assert "min_sentinel_accuracy" not in text and "0.933" not in text
    assert not re.findall(r"\d\.\d{2,}", text), re.findall(r".{30}\d\.\d{2,}.{10}", text)
    assert "66.7 %" in text and "alex-kmeans untrained (init heads)" in text
    assert re.findall(r"\d+(?:\.\d+)? ?%", text) and all(
        re.fullmatch(r"\d+(\.\d)? ?%", p) for p in re.findall(r"\d+(?:\.\d+)? ?%", text)
    )


def test_the_study_list_shows_progress_against_the_target(
    client, carols_study, researcher_carol, answer_trials, truthful
):
    from judgments.assignments import assignment_start
    from judgments.qc import assignment_submit

    a = assignment_start(study=carols_study, platform="anonymous", worker_id="w").assignment
    answer_trials(a, truthful)
    assignment_submit(token=a.token)
    client.force_login(researcher_carol)
    text = re.sub(r"<[^>]+>", " ", client.get("/dashboard/").content.decode()).replace("\u00a0", " ")
    # 6 test items, half val (5 judgments each) and half train (2 each): 21 needed; one worker gave 6
    assert re.search(r"\b6 of 21 \(28\.6 %\)", text), text
