"""The study page's exports section: create, watch (htmx polls /dashboard/<id>/exports/ every 2 s while an
export is queued or running, and stops when none is), download, sha256."""

from __future__ import annotations

import re

import pytest

from exports.models import Export
from exports.services import export_build, export_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def study(make_study, researcher_carol, answer_trials, truthful):
    from judgments.assignments import assignment_start
    from judgments.qc import assignment_submit

    study = make_study(owner=researcher_carol, n_test=6, n_sentinels=2, n_practice=0, name="Carol's")
    a = assignment_start(study=study, platform="anonymous", worker_id="w1").assignment
    answer_trials(a, truthful)
    assignment_submit(token=a.token)
    return study


def _section(html: str) -> str:
    return re.search(r'<section id="exports".*?</section>', html, re.S).group(0)


def test_it_offers_the_create_button_and_says_when_there_is_none(client, study, researcher_carol):
    client.force_login(researcher_carol)
    section = _section(client.get(f"/dashboard/{study.pk}/").content.decode())
    assert 'id="export-create"' in section and "No export yet." in section
    assert f'action="/dashboard/{study.pk}/export/"' in section and "hx-trigger" not in section.split(">")[0]


@pytest.mark.parametrize(("status", "shown"), [("pending", "queued"), ("running", "running")])
def test_it_polls_while_an_export_is_queued_or_running(client, study, researcher_carol, status, shown):
    export = export_create(study=study, user=researcher_carol)
    Export.objects.filter(pk=export.pk).update(status=status)
    client.force_login(researcher_carol)
    for path in (f"/dashboard/{study.pk}/", f"/dashboard/{study.pk}/exports/"):
        section = _section(client.get(path).content.decode())
        opening = section.split(">")[0]
        assert f'hx-get="/dashboard/{study.pk}/exports/"' in opening and 'hx-trigger="every 2s"' in opening
        assert 'hx-swap="outerHTML"' in opening
        assert f'<li class="export" data-status="{shown}">' in section and "export-download" not in section


def test_it_stops_polling_and_shows_the_download_and_sha256_when_done(client, study, researcher_carol):
    export = export_build(export=export_create(study=study, user=researcher_carol))
    assert export.status == "done" and len(export.sha256) == 64
    client.force_login(researcher_carol)
    fragment = client.get(f"/dashboard/{study.pk}/exports/").content.decode()
    assert fragment.lstrip().startswith("<section") and "<html" not in fragment
    opening = fragment.split(">")[0]
    assert "hx-trigger" not in opening
    assert '<li class="export" data-status="done">' in fragment
    assert f'<code class="sha256">{export.sha256}</code>' in fragment
    assert f'class="export-download" href="/api/v1/exports/{export.pk}/download/"' in fragment
    assert f"{export.summary['n_counted_judgments']} of {export.summary['n_judgments']} judgments" in fragment
    assert client.get(f"/api/v1/exports/{export.pk}/download/").status_code == 200


def test_a_failed_export_shows_its_error_and_does_not_poll(client, study, researcher_carol):
    export = export_create(study=study, user=researcher_carol)
    Export.objects.filter(pk=export.pk).update(status="failed", error="disk full")
    client.force_login(researcher_carol)
    fragment = client.get(f"/dashboard/{study.pk}/exports/").content.decode()
    assert "hx-trigger" not in fragment.split(">")[0]
    assert 'data-status="failed"' in fragment and "disk full" in fragment


def test_the_fragment_is_the_owners_only(client, study, researcher_dave):
    r = client.get(f"/dashboard/{study.pk}/exports/")
    assert r.status_code == 302 and r["Location"].startswith("/accounts/login/")
    client.force_login(researcher_dave)
    assert client.get(f"/dashboard/{study.pk}/exports/").status_code == 404
    assert client.post(f"/dashboard/{study.pk}/exports/").status_code in (404, 405)
