"""Hostile bodies and paths on the annotator and researcher APIs: each was a 500 before (found by an
attacker's review), each is now a 4xx with a message and stores nothing. The PostgreSQL variant matters
most: PostgreSQL refuses NUL characters in text and jsonb, where SQLite stores them without complaint."""

from __future__ import annotations

import json
import uuid

import pytest
from rest_framework.test import APIClient

from judgments.models import Judgment

pytestmark = pytest.mark.django_db

HUGE = "1" + "0" * 400  # valid JSON; float() of it overflows


def _started(study):
    client = APIClient()
    body = client.post(
        f"/api/v1/studies/{study.pk}/assignments/", {"platform": "anonymous", "consent": True}, format="json"
    ).json()
    return client, body["token"], body["trials"][0]["id"]


def _answer(client, token, raw: str):
    return client.post(f"/api/v1/assignments/{token}/judgments/", raw, content_type="application/json")


def _answer_attacks(trial: str) -> dict[str, str]:
    ok = {"trial": trial, "response": "left", "rt_ms": 900, "idempotency_key": uuid.uuid4().hex}

    def body(**change):
        return json.dumps({**ok, **change})

    return {
        "huge rt_ms": body(rt_ms="@").replace('"@"', HUGE),
        "huge client_shown_at": body(client_shown_at="@").replace('"@"', HUGE),
        "huge duration": body(durations={"ref_ms": "@"}).replace('"@"', HUGE),
        "huge rt_ms as a string": body(rt_ms=HUGE),
        "NUL in trial": body(trial="a\x00b"),
        "NUL in idempotency_key": body(idempotency_key="abc\x00defgh"),
        "NUL in display": body(display={"user_agent": "x\x00y"}),
        "NUL in a display key": body(display={"a\x00": 1}),
        "lone surrogate in trial": body(trial="@").replace('"@"', '"\\ud800"'),
        "lone surrogate in display": body(display={"ua": "@"}).replace('"@"', '"\\udfff"'),
        "deeply nested display": body(display="@").replace('"@"', "[" * 2000 + "]" * 2000),
        "deeply nested body": "[" * 5000 + "]" * 5000,
        "moderately nested display": body(display="@").replace('"@"', '{"a":' * 40 + "1" + "}" * 40),
    }


def _check_answer_attacks(study):
    client, token, trial = _started(study)
    for name, raw in _answer_attacks(trial).items():
        r = _answer(client, token, raw)
        assert 400 <= r.status_code < 500, (name, r.status_code, r.content[:200])
        assert r.json().get("message"), name
    assert not Judgment.objects.exists()
    # the same trial is still answerable afterwards: nothing half-stored
    good = json.dumps({"trial": trial, "response": "left", "rt_ms": 900, "idempotency_key": uuid.uuid4().hex})
    assert _answer(client, token, good).status_code == 201


def _check_path_attacks(study):
    client, token, trial = _started(study)
    for path in (
        "/api/v1/assignments/a%00b/",
        f"/api/v1/assignments/{token}/trials/a%00b/left/",
        f"/api/v1/assignments/{token}/trials/{trial}/le%00ft/",
        "/api/v1/assignments/" + "x" * 5000 + "/",
    ):
        assert client.get(path).status_code == 404, path
    for verb in ("heartbeat", "submit", "return"):
        assert client.post(f"/api/v1/assignments/a%00b/{verb}/").status_code == 404
        assert (
            client.post(f"/api/v1/assignments/%ED%A0%80x/{verb}/").status_code == 404
        )  # an encoded lone surrogate


def _check_researcher_attacks(study, owner):
    client = APIClient()
    client.force_authenticate(owner)
    for raw in (
        json.dumps({"config": {"instructions": "a\x00b"}}),
        json.dumps({"name": "x\x00"}),
        '{"config": {"instructions": "\\ud800"}}',
        '{"config": ' + "[" * 3000 + "]" * 3000 + "}",
    ):
        r = client.patch(f"/api/v1/studies/{study.pk}/", raw, content_type="application/json")
        assert 400 <= r.status_code < 500 and r.json().get("message"), (raw[:40], r.status_code)
    r = client.post(
        "/api/v1/studies/",
        json.dumps({"name": "n", "kind": "2afc", "config": {"consent_text": "a\x00"}}),
        content_type="application/json",
    )
    assert r.status_code == 400
    study.refresh_from_db()
    assert "\x00" not in json.dumps(study.config) and "\x00" not in study.name


def test_hostile_answer_bodies_get_a_4xx_and_store_nothing(make_study):
    _check_answer_attacks(make_study(n_test=6, n_sentinels=0, n_practice=0))


def test_hostile_paths_get_a_404(make_study):
    _check_path_attacks(make_study(n_test=6, n_sentinels=0, n_practice=0))


def test_hostile_researcher_bodies_get_a_4xx(make_study, researcher_carol):
    _check_researcher_attacks(
        make_study(n_test=2, n_sentinels=0, n_practice=0, owner=researcher_carol), researcher_carol
    )


@pytest.mark.integration
@pytest.mark.postgres
def test_the_same_attacks_on_postgresql(postgres, make_study, researcher_carol):
    """NUL characters reach PostgreSQL only if the API lets them through: there they were DataErrors (500)."""
    study = make_study(n_test=12, n_sentinels=0, n_practice=0, owner=researcher_carol, config={"hit_size": 3})
    _check_answer_attacks(study)
    _check_path_attacks(study)
    _check_researcher_attacks(study, researcher_carol)
