"""The workers table in pages: the study page shows the first 25 with a link to all, the workers page and
the API take ?page= (50 a page, most judgments first), and a bad page never breaks them."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from judgments.assignments import assignment_start
from judgments.models import Assignment, Worker

pytestmark = pytest.mark.django_db


@pytest.fixture
def crowded(make_study, researcher_carol, answer_trials, truthful):
    """Carol's study with 55 workers: one who answered a HIT, and 54 who hold one and answered nothing."""
    study = make_study(owner=researcher_carol, n_test=4, n_sentinels=1, n_practice=0, config={"hit_size": 4})
    answer_trials(assignment_start(study=study, platform="anonymous", worker_id="busy").assignment, truthful)
    workers = Worker.objects.bulk_create(
        Worker(platform="anonymous", external_hash=f"{n:02x}" * 32) for n in range(54)
    )
    lease = timezone.now() + timedelta(hours=1)
    Assignment.objects.bulk_create(
        Assignment(study=study, worker=w, platform="anonymous", lease_expires_at=lease) for w in workers
    )
    return study


def _rows(html: str) -> list[str]:
    return re.findall(r'<tr data-worker="([0-9a-f]{16})"', html)


def test_it_shows_the_first_25_on_the_study_page_with_a_link_to_all(client, crowded, researcher_carol):
    client.force_login(researcher_carol)
    html = client.get(f"/dashboard/{crowded.pk}/").content.decode()
    section = html[html.index('<section id="workers"') :]
    rows = _rows(section)
    assert len(rows) == 25 and rows[1:] == [f"{n:02x}" * 8 for n in range(24)]  # most judgments, then hash
    assert "Workers (55)" in section
    assert f'href="/dashboard/{crowded.pk}/workers/">all 55 workers</a>' in section
    assert "workers-pages" not in section


def test_it_pages_the_workers_page(client, crowded, researcher_carol):
    client.force_login(researcher_carol)
    url = f"/dashboard/{crowded.pk}/workers/"
    first = client.get(url).content.decode()
    second = client.get(url + "?page=2").content.decode()
    assert len(_rows(first)) == 50 and len(_rows(second)) == 5
    assert set(_rows(first)).isdisjoint(_rows(second))
    assert f'href="{url}?page=2" rel="next"' in first and 'rel="prev"' not in first
    assert f'href="{url}?page=1" rel="prev"' in second and 'rel="next"' not in second
    assert "Page 2 of 2" in second
    # the htmx fragment pages the same way
    fragment = client.get(url + "?page=2", headers={"HX-Request": "true"}).content.decode()
    assert "<html" not in fragment and _rows(fragment) == _rows(second)


@pytest.mark.parametrize("bad", ["abc", "0", "-1", "1e3", "²", "9" * 40, "1 OR 1=1"])
def test_it_shows_the_first_page_for_a_bad_page(client, crowded, researcher_carol, bad):
    client.force_login(researcher_carol)
    r = client.get(f"/dashboard/{crowded.pk}/workers/", {"page": bad})
    assert r.status_code == 200 and "Page 1 of 2" in r.content.decode()


def test_it_shows_the_last_page_past_the_end(client, crowded, researcher_carol):
    client.force_login(researcher_carol)
    r = client.get(f"/dashboard/{crowded.pk}/workers/?page=99")
    assert r.status_code == 200 and len(_rows(r.content.decode())) == 5


def test_it_pages_the_api(crowded, researcher_carol):
    api = APIClient()
    api.force_authenticate(researcher_carol)
    url = f"/api/v1/studies/{crowded.pk}/workers/"
    first = api.get(url).json()
    assert first["count"] == 55 and len(first["results"]) == 50 and first["previous"] is None
    assert first["next"] == f"http://testserver{url}?page=2"
    assert first["results"][0]["judgments"] == 5 and first["results"][1]["judgments"] == 0
    second = api.get(first["next"]).json()
    assert len(second["results"]) == 5 and second["next"] is None
    assert second["previous"] == f"http://testserver{url}?page=1"
    for bad in ("abc", "0", "9" * 40):
        r = api.get(url, {"page": bad})
        assert r.status_code == 400 and r.json()["message"] == "page must be a positive whole number"


def test_it_hides_other_peoples_workers(crowded, researcher_dave, client):
    api = APIClient()
    api.force_authenticate(researcher_dave)
    assert api.get(f"/api/v1/studies/{crowded.pk}/workers/?page=2").status_code == 404
    client.force_login(researcher_dave)
    assert client.get(f"/dashboard/{crowded.pk}/workers/?page=2").status_code == 404
