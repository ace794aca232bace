""" "Try it as an annotator": the real annotator page in preview mode; a preview HIT and its images from
owner-only endpoints; nothing recorded (no worker, assignment, trial or judgment, no lease, no counter)."""

import json
import re

import pytest
from django.apps import apps

from studies.models import Item, Study

pytestmark = pytest.mark.django_db


def _counts(study) -> dict:
    """Rows of every judgments table, and the study's item counters and status."""
    counts = {
        model.__name__: model.objects.count() for model in apps.get_app_config("judgments").get_models()
    }
    counts["items"] = sorted(Item.objects.filter(study=study).values_list("index", "n_judgments", "n_open"))
    counts["study"] = (
        Study.objects.filter(pk=study.pk).values_list("status", "config", "build_progress").get()
    )
    return counts


def _page_data(html: str) -> dict:
    return json.loads(
        re.search(r'<script id="page-data" type="application/json">(.*?)</script>', html, re.S)[1]
    )


def _preview_everything(client, study) -> dict:
    """What the page does in preview mode: the page, its HIT, every image of every trial."""
    page = client.get(f"/dashboard/{study.pk}/try/")
    assert page.status_code == 200
    data = _page_data(page.content.decode())
    hit = client.get(data["preview"]["hit"])
    assert hit.status_code == 200
    body = hit.json()
    for trial in body["trials"]:
        for url in trial["images"].values():
            r = client.get(url)
            assert r.status_code == 200 and r["Content-Type"] == "image/png", url
            assert b"".join(r.streaming_content).startswith(b"\x89PNG")
    return body


def test_it_runs_the_real_annotator_page_in_preview_mode(client, make_study, researcher_carol):
    study = make_study(owner=researcher_carol, n_test=6, n_sentinels=2, n_practice=1)
    client.force_login(researcher_carol)
    r = client.get(f"/dashboard/{study.pk}/try/")
    html = r.content.decode()
    assert r.status_code == 200 and 'class="annotator"' in html and "js/annotator.js" in html
    assert 'id="preview-banner"' in html and "Preview: nothing is recorded" in html
    assert f'href="/dashboard/{study.pk}/"' in html and "<script>" not in html
    page = _page_data(html)
    assert page["preview"] == {"hit": f"/dashboard/{study.pk}/try/hit/", "back": f"/dashboard/{study.pk}/"}
    assert page["kind"] == "2afc" and page["params"] == {}


def test_the_preview_hit_has_practice_sentinels_and_test_items_in_the_api_shape(
    client, make_study, researcher_carol
):
    study = make_study(owner=researcher_carol, n_test=30, n_sentinels=15, n_practice=2)
    client.force_login(researcher_carol)
    hit = client.get(f"/dashboard/{study.pk}/try/hit/").json()
    assert hit["preview"] is True and hit["kind"] == "2afc" and hit["n_answered"] == 0
    trials = hit["trials"]
    assert [t["practice"] for t in trials[:2]] == [True, True] and not any(t["practice"] for t in trials[2:])
    assert all(t["answer"] in ("left", "right") for t in trials[:2])
    assert all("answer" not in t for t in trials[2:])  # like the API: answers for practice only
    assert len(trials) == hit["n_trials"] == 2 + 12 + 2  # 12 tests at most; 15 sentinels per 85 -> 2
    assert [t["position"] for t in trials] == list(range(len(trials)))
    for t in trials:
        assert set(t["images"]) == {"left", "ref", "right"}
        assert all(
            re.fullmatch(rf"/dashboard/{study.pk}/try/images/[0-9a-f]{{64}}\.png", u)
            for u in t["images"].values()
        )
    assert hit["completion"]["code"] == study.collection["completion_code"]
    assert "token" in hit and hit["token"] == "preview"


@pytest.mark.parametrize("kind", ["2afc", "jnd"])
@pytest.mark.parametrize("status", ["draft", "paused", "active"])
def test_a_full_preview_records_nothing(client, make_study, researcher_carol, kind, status):
    study = make_study(owner=researcher_carol, kind=kind, n_test=8, n_sentinels=3, n_practice=2, active=False)
    Study.objects.filter(pk=study.pk).update(status=status)
    client.force_login(researcher_carol)
    before = _counts(study)
    hit = _preview_everything(client, study)
    slots = {"2afc": {"left", "ref", "right"}, "jnd": {"first", "second"}}[kind]
    assert hit["trials"] and all(set(t["images"]) == slots for t in hit["trials"])
    assert _counts(study) == before
    assert client.session.get("_auth_user_id")  # the researcher's own session only


def test_the_preview_shows_the_study_s_sides_balanced_and_the_practice_answers_right(
    client, make_study, researcher_carol
):
    study = make_study(owner=researcher_carol, n_test=10, n_sentinels=0, n_practice=4)
    client.force_login(researcher_carol)
    hit = client.get(f"/dashboard/{study.pk}/try/hit/").json()
    practice = Item.objects.filter(study=study, role="practice").order_by("index")
    for trial, item in zip(hit["trials"][:4], practice, strict=True):
        left = trial["images"]["left"].rsplit("/", 1)[1]
        shown_left = "p0" if item.p0_image.endswith(left) else "p1"
        assert item.p0_image.endswith(left) or item.p1_image.endswith(left)
        assert trial["answer"] == ("left" if shown_left == item.expected else "right")
        assert item.ref_image.endswith(trial["images"]["ref"].rsplit("/", 1)[1])


def test_a_study_without_items_has_nothing_to_try(client, researcher_carol):
    from studies.services import study_create

    study = study_create(name="empty", kind="2afc", build_config={}, owner=researcher_carol)
    client.force_login(researcher_carol)
    r = client.get(f"/dashboard/{study.pk}/try/", follow=True)
    assert r.redirect_chain[-1][0] == f"/dashboard/{study.pk}/" and "no test items yet" in r.content.decode()
    r = client.get(f"/dashboard/{study.pk}/try/hit/")
    assert r.status_code == 409 and "no test items" in r.json()["message"]


def test_the_image_endpoint_serves_only_this_study_s_own_stimuli(client, make_study, researcher_carol):
    mine = make_study(owner=researcher_carol, n_test=2, n_sentinels=0, n_practice=0)
    other = make_study(owner=researcher_carol, n_test=2, n_sentinels=0, n_practice=0)
    client.force_login(researcher_carol)
    own = Item.objects.filter(study=mine).first().p1_image.split("/")[1]
    foreign = Item.objects.filter(study=other).first().p1_image.split("/")[1]
    assert client.get(f"/dashboard/{mine.pk}/try/images/{own}").status_code == 200
    for name in (foreign, "0" * 64 + ".png", "..%2F..%2Fsecret_key", "x.png", own.upper(), own + ".png"):
        assert client.get(f"/dashboard/{mine.pk}/try/images/{name}").status_code == 404, name


@pytest.mark.parametrize("persona", ["other researcher", "anonymous"])
def test_the_try_endpoints_are_the_owner_s_only(
    client, make_study, researcher_carol, researcher_dave, persona
):
    study = make_study(owner=researcher_carol, n_test=4, n_sentinels=1, n_practice=1)
    name = Item.objects.filter(study=study).first().ref_image.split("/")[1]
    if persona == "other researcher":
        client.force_login(researcher_dave)
    before = _counts(study)
    for path in ("try/", "try/hit/", f"try/images/{name}"):
        r = client.get(f"/dashboard/{study.pk}/{path}")
        if persona == "other researcher":
            assert r.status_code == 404, path
        else:
            assert r.status_code == 302 and r["Location"].startswith("/accounts/login/"), path
        assert study.name not in r.content.decode(errors="replace")
    assert _counts(study) == before
