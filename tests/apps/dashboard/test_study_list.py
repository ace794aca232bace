"""The studies list at /dashboard/: one's own studies with progress, judgments in the last hour and the last
evaluation; a status filter; 25 a page; a constant number of queries whatever the number of studies."""

from __future__ import annotations

import re
import uuid

import pytest

from judgments.assignments import assignment_start
from judgments.qc import assignment_submit
from judgments.selectors import study_stats
from studies.models import Study
from training.models import Evaluation

pytestmark = pytest.mark.django_db


def _many(owner, n: int, status=Study.Status.ACTIVE, prefix="bulk") -> None:
    Study.objects.bulk_create(
        [Study(name=f"{prefix} {k:03d}", kind="2afc", owner=owner, status=status) for k in range(n)]
    )


def _eval(study, *, metric, kind, score, split="val", run=None):
    return Evaluation.objects.create(
        study=study,
        run=run or uuid.uuid4(),
        metric=metric,
        kind=kind,
        measure="2afc",
        split=split,
        category="all",
        score=score,
        n_items=10,
        n_judgments=40,
    )


def test_it_lists_ones_studies_with_progress_last_hour_and_last_evaluation(
    client, make_study, researcher_carol, answer_trials, truthful
):
    study = make_study(owner=researcher_carol, n_test=8, n_sentinels=2, n_practice=0, name="Blur study")
    a = assignment_start(study=study, platform="anonymous", worker_id="w1").assignment
    answer_trials(a, truthful)
    assignment_submit(token=a.token)
    run = uuid.uuid4()
    _eval(study, metric="trained alex-kmeans lin", kind=Evaluation.Kind.TRAINED, score=0.712, run=run)
    _eval(study, metric="trained squeeze-random lin", kind=Evaluation.Kind.TRAINED, score=0.655, run=run)
    _eval(study, metric="l2", kind=Evaluation.Kind.BASELINE, score=0.9, run=run)  # not learned
    client.force_login(researcher_carol)
    html = client.get("/dashboard/").content.decode()
    assert 'id="studies"' in html and "Blur study" in html
    coverage = study_stats(study=study)["coverage"].values()
    needed, accepted = sum(c["needed"] for c in coverage), sum(c["accepted"] for c in coverage)
    assert accepted > 0
    assert re.search(rf'<progress max="{needed}" value="{accepted}"', html)
    assert f"{accepted} of {needed}" in html
    last_hour = study_stats(study=study)["judgments_last_hour"]
    assert last_hour > 0 and f'<td class="num">{last_hour}</td>' in html
    assert "trained alex-kmeans lin, 71.2" in html and "l2," not in html
    assert f'href="/dashboard/{study.pk}/"' in html and f'href="/s/{study.pk}/"' in html
    assert 'id="new-study"' in html and 'href="/dashboard/new/"' in html


def test_it_filters_by_status_with_a_labelled_select(client, researcher_carol):
    _many(researcher_carol, 3, status=Study.Status.PAUSED, prefix="paused")
    _many(researcher_carol, 2, status=Study.Status.DRAFT, prefix="draft")
    client.force_login(researcher_carol)
    html = client.get("/dashboard/").content.decode()
    assert 'id="study-filter"' in html and '<label for="id_status">Status</label>' in html
    assert 'select name="status"' in html
    for value, _ in Study.Status.choices:  # every status, "closed" included once it exists
        assert f'<option value="{value}"' in html
    html = client.get("/dashboard/?status=paused").content.decode()
    assert html.count("<tr data-study=") == 3 and "draft 00" not in html
    r = client.get("/dashboard/?status=<script>")
    assert r.status_code == 200 and "Select a valid choice" in r.content.decode()


def test_it_pages_25_at_a_time_and_keeps_the_filter(client, researcher_carol):
    _many(researcher_carol, 60, status=Study.Status.ACTIVE)
    client.force_login(researcher_carol)
    first = client.get("/dashboard/?status=active").content.decode()
    assert first.count("<tr data-study=") == 25
    assert 'class="pagination" aria-label=' in first and "?status=active&amp;page=2" in first
    last = client.get("/dashboard/?status=active&page=3").content.decode()
    assert last.count("<tr data-study=") == 10 and "page=2" in last
    assert client.get("/dashboard/?page=999").status_code == 200  # past the end: the last page
    assert client.get("/dashboard/?page=x").status_code == 200


def test_it_shows_only_ones_own_studies_and_superusers_all(client, researcher_carol, researcher_dave):
    _many(researcher_carol, 2, prefix="carol")
    _many(researcher_dave, 2, prefix="dave")
    client.force_login(researcher_dave)
    html = client.get("/dashboard/").content.decode()
    assert "dave 000" in html and "carol 000" not in html
    researcher_dave.is_superuser = True
    researcher_dave.save()
    assert "carol 000" in client.get("/dashboard/").content.decode()
    client.logout()
    r = client.get("/dashboard/")
    assert r.status_code == 302 and r["Location"].startswith("/accounts/login/")


def test_it_stays_at_a_constant_number_of_queries(
    client, make_study, researcher_carol, django_assert_max_num_queries
):
    client.force_login(researcher_carol)
    study = make_study(owner=researcher_carol, n_test=4, n_sentinels=1, n_practice=0)
    _eval(study, metric="trained alex-kmeans lin", kind=Evaluation.Kind.TRAINED, score=0.7)
    _many(researcher_carol, 5)
    with django_assert_max_num_queries(12) as few:
        client.get("/dashboard/")
    _many(researcher_carol, 200, prefix="more")
    for s in Study.objects.filter(name__startswith="more")[:30]:
        _eval(s, metric="trained alex-kmeans lin", kind=Evaluation.Kind.TRAINED, score=0.6)
    with django_assert_max_num_queries(len(few.captured_queries)) as many:
        r = client.get("/dashboard/")
    assert r.content.decode().count("<tr data-study=") == 25
    assert len(many.captured_queries) == len(few.captured_queries)
