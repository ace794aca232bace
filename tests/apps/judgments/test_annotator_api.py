"""The annotator API over HTTP: start/resume, answers, completion, crowd platforms, opacity, throttling."""

import json
import uuid

import pytest
from rest_framework.test import APIClient

from judgments.models import Assignment, Judgment

pytestmark = pytest.mark.django_db


@pytest.fixture
def client():
    return APIClient()


def start(client, study, **body):
    payload = {"platform": "anonymous", "consent": True, **body}
    return client.post(f"/api/v1/studies/{study.pk}/assignments/", payload, format="json")


def answer(client, token, trial, response, key=None):
    return client.post(
        f"/api/v1/assignments/{token}/judgments/",
        {
            "trial": trial["id"],
            "response": response,
            "rt_ms": 700.5,
            "idempotency_key": key or uuid.uuid4().hex,
            "display": {"refresh_hz": 60},
        },
        format="json",
    )


def test_an_anonymous_worker_runs_a_whole_hit_over_http(client, make_study):
    study = make_study(n_test=5, n_sentinels=2, n_practice=2)
    r = start(client, study)
    assert r.status_code == 201, r.content
    body = r.json()
    token, worker_id = body["token"], body["worker_id"]
    assert body["n_trials"] == 2 + 5 + 1 and body["next_position"] == 0
    practice = body["trials"][0]
    assert practice["practice"] and practice["answer"] in ("left", "right")
    r = answer(client, token, practice, practice["answer"])
    assert r.status_code == 201 and r.json()["correct"] is True
    # a reload resumes: same assignment, answered trials marked, next position moved on
    again = start(client, study, worker_id=worker_id)
    assert again.status_code == 200 and again.json()["token"] == token and again.json()["next_position"] == 1
    assert client.post(f"/api/v1/assignments/{token}/submit/").status_code == 409
    for trial in again.json()["trials"][1:]:
        assert answer(client, token, trial, "left").status_code == 201
    done = client.post(f"/api/v1/assignments/{token}/submit/")
    assert done.status_code == 200 and done.json()["status"] == "submitted"
    assert done.json()["completion"]["code"] == study.collection["completion_code"]
    assert Judgment.objects.count() == 8


def test_payloads_never_reveal_which_patch_is_which(client, make_study):
    study = make_study(n_test=4, n_sentinels=2, n_practice=1)
    body = start(client, study).json()
    text = json.dumps(body)
    item_fields = ("p0", "p1", "sentinel", "category", "traditional", "split", "records", "expected", "index")
    for word in item_fields:
        assert f'"{word}"' not in text, word
    for trial in body["trials"]:
        assert set(trial) <= {"id", "position", "practice", "answered", "images", "answer"}
        assert set(trial["images"]) == {"left", "ref", "right"}
        for url in trial[
            "images"
        ].values():  # opaque, per trial and slot, bound to the token (no content hash)
            assert url.startswith(f"/api/v1/assignments/{body['token']}/trials/{trial['id']}/")
            assert ".png" not in url
        assert "answer" in trial or not trial["practice"]


def test_a_retried_post_returns_the_stored_answer(client, make_study):
    study = make_study(n_test=2, n_sentinels=0, n_practice=0)
    body = start(client, study).json()
    trial = body["trials"][0]
    first = answer(client, body["token"], trial, "right", key="retry-key-1")
    second = answer(client, body["token"], trial, "right", key="retry-key-1")
    assert first.status_code == 201 and second.status_code == 200 and second.json()["replayed"]
    assert Judgment.objects.count() == 1


@pytest.mark.parametrize(
    "body,field",
    [
        ({"response": "up"}, "response"),
        ({"rt_ms": "fast"}, "rt_ms"),
        ({"idempotency_key": ""}, "idempotency_key"),
        ({"trial": "nope"}, "trial"),
    ],
)
def test_bad_answers_get_a_4xx_with_a_message(client, make_study, body, field):
    study = make_study(n_test=2, n_sentinels=0, n_practice=0)
    started = start(client, study).json()
    payload = {
        "trial": started["trials"][0]["id"],
        "response": "left",
        "rt_ms": 500,
        "idempotency_key": "k" * 10,
        **body,
    }
    r = client.post(f"/api/v1/assignments/{started['token']}/judgments/", payload, format="json")
    assert 400 <= r.status_code < 500 and r.json()["message"]
    assert field in json.dumps(r.json())


def test_start_requires_consent_and_a_known_study(client, make_study):
    study = make_study(n_test=2)
    r = start(client, study, consent=False)
    assert r.status_code == 400 and "consent" in r.json()["message"]
    r = client.post(
        f"/api/v1/studies/{uuid.uuid4()}/assignments/",
        {"platform": "anonymous", "consent": True},
        format="json",
    )
    assert r.status_code == 404
    assert client.get("/api/v1/assignments/not-a-token/").status_code == 404


def test_prolific_gets_its_completion_redirect_only_after_every_trial(client, make_study):
    study = make_study(n_test=2, n_sentinels=1, n_practice=0)
    r = start(client, study, platform="prolific", worker_id="PID123", study_id="STUDY9", session_id="SESS9")
    body = r.json()
    assert body["completion"] is None
    for trial in body["trials"]:
        answer(client, body["token"], trial, "left")
    done = client.post(f"/api/v1/assignments/{body['token']}/submit/").json()
    code = study.collection["completion_code"]
    assert done["completion"]["redirect_url"] == f"https://app.prolific.com/submissions/complete?cc={code}"
    # the same Prolific session coming back sees its completion again instead of a new HIT
    back = start(
        client, study, platform="prolific", worker_id="PID123", study_id="STUDY9", session_id="SESS9"
    )
    assert back.json()["status"] == "submitted" and back.json()["completion"]["code"] == code
    assert start(client, study, platform="prolific", worker_id="PID123").status_code == 400  # no SESSION_ID


def test_mturk_preview_creates_nothing_and_accepted_hits_post_back_to_mturk(client, make_study):
    study = make_study(n_test=2, n_sentinels=0, n_practice=2)
    preview = start(
        client,
        study,
        platform="mturk",
        worker_id="",
        assignment_id="ASSIGNMENT_ID_NOT_AVAILABLE",
        hit_id="H1",
        turk_submit_to="https://workersandbox.mturk.com",
    )
    assert preview.status_code == 200 and preview.json()["preview"] and len(preview.json()["examples"]) == 2
    assert not Assignment.objects.exists()
    bad = start(
        client,
        study,
        platform="mturk",
        worker_id="A1",
        assignment_id="AS1",
        hit_id="H1",
        turk_submit_to="https://evil.example.com",
    )
    assert bad.status_code == 400
    body = start(
        client,
        study,
        platform="mturk",
        worker_id="A1WORKER",
        assignment_id="AS1",
        hit_id="H1",
        turk_submit_to="https://workersandbox.mturk.com",
    ).json()
    for trial in body["trials"]:
        answer(client, body["token"], trial, trial.get("answer", "left"))
    form = client.post(f"/api/v1/assignments/{body['token']}/submit/").json()["completion"]["mturk_form"]
    assert form["action"] == "https://workersandbox.mturk.com/mturk/externalSubmit"
    assert form["fields"]["assignmentId"] == "AS1"
    assert "A1WORKER" not in json.dumps(list(Assignment.objects.values("platform_info")))


def test_heartbeat_and_return(client, make_study):
    study = make_study(n_test=2)
    token = start(client, study).json()["token"]
    assert client.post(f"/api/v1/assignments/{token}/heartbeat/").status_code == 200
    assert client.post(f"/api/v1/assignments/{token}/return/").json()["status"] == "returned"
    assert client.post(f"/api/v1/assignments/{token}/heartbeat/").status_code == 409


def test_submits_are_throttled_per_assignment(client, make_study, throttle_rates):
    throttle_rates({"judgments": "3/min", "assignment_start": "100/min"})
    study = make_study(n_test=2)
    token = start(client, study).json()["token"]
    codes = [client.post(f"/api/v1/assignments/{token}/heartbeat/").status_code for _ in range(5)]
    assert codes[:3] == [200, 200, 200] and codes[3] == 429
    other = start(client, study, worker_id="someone-else").json()["token"]
    assert client.post(f"/api/v1/assignments/{other}/heartbeat/").status_code == 200  # its own budget


def test_annotator_endpoints_take_json_only(client, make_study):
    study = make_study(n_test=3)
    r = client.post(
        f"/api/v1/studies/{study.pk}/assignments/",
        "platform=anonymous&consent=true",
        content_type="application/x-www-form-urlencoded",
    )
    assert r.status_code == 400 and "JSON" in r.json()["message"], r.content
    r = client.post(
        f"/api/v1/studies/{study.pk}/assignments/",
        {"platform": "anonymous", "consent": True},
        format="json",
        HTTP_ACCEPT="text/html",
    )
    assert r.status_code == 201 and r["Content-Type"] == "application/json"  # JSON whatever the Accept header


def test_throttles_let_requests_through_while_the_cache_is_unreachable(client, make_study, settings, caplog):
    """A throttle guards the server; an outage of its cache (Redis) must not turn answers into errors."""
    from core import throttling

    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens on port 1
        }
    }
    throttling._last_warning[0] = 0.0
    study = make_study(n_test=3)
    r = start(client, study)
    assert r.status_code == 201, r.content
    body = r.json()
    assert answer(client, body["token"], body["trials"][0], "left").status_code == 201
    assert Judgment.objects.filter(assignment__token=body["token"]).count() == 1
    warnings = [rec for rec in caplog.records if "throttle cache unreachable" in rec.getMessage()]
    assert len(warnings) == 1  # logged once, not on every request


@pytest.mark.parametrize(
    "change, field",
    [
        ({"trial": 5}, "trial"),
        ({"trial": "x" * 65}, "trial"),
        ({"response": None}, "response"),
        ({"rt_ms": "fast"}, "rt_ms"),
        ({"rt_ms": True}, "rt_ms"),
        ({"idempotency_key": ["k"]}, "idempotency_key"),
        ({"client_shown_at": "soon"}, "client_shown_at"),
        ({"durations": [1, 2]}, "durations"),
        ({"durations": {"ref_ms": "long"}}, "durations"),
        ({"display": "wide"}, "display"),
    ],
)
def test_malformed_answers_get_a_400_naming_the_field(make_study, change, field):
    from rest_framework.test import APIClient

    from judgments.assignments import assignment_start

    study = make_study(n_test=2, n_sentinels=0, n_practice=0)
    a = assignment_start(study=study, platform="anonymous", worker_id="w").assignment
    trial = a.trials.first()
    body = {
        "trial": trial.public_id,
        "response": "left",
        "rt_ms": 700,
        "idempotency_key": "abcdefgh12",
        **change,
    }
    client = APIClient()
    r = client.post(f"/api/v1/assignments/{a.token}/judgments/", body, format="json")
    assert r.status_code == 400 and r.json()["extra"]["field"] == field, r.content
    assert not trial.__class__.objects.get(pk=trial.pk).answered
    valid = {"trial": trial.public_id, "response": "left", "rt_ms": 700, "idempotency_key": "abcdefgh12"}
    r = client.post(f"/api/v1/assignments/{a.token}/judgments/", valid, format="json")
    assert r.status_code == 201, r.content  # the same answer, well formed, is stored


def test_assignment_bodies_match_their_documented_serializer(make_study):
    """The annotator endpoints build their bodies without the serializer; the serializer (the OpenAPI
    schema) would produce exactly the same JSON."""
    from rest_framework.renderers import JSONRenderer

    from judgments.apis import AssignmentOutputSerializer, assignment_output
    from judgments.assignments import assignment_start

    study = make_study(n_test=4, n_sentinels=2, n_practice=2)
    a = assignment_start(study=study, platform="anonymous", worker_id="w").assignment
    body = assignment_output(a, worker_id="w")
    render = JSONRenderer().render
    assert json.loads(render(body)) == json.loads(render(AssignmentOutputSerializer(body).data))
    r = APIClient().get(f"/api/v1/assignments/{a.token}/")
    assert set(r.json()) == set(AssignmentOutputSerializer().fields) - {"worker_id"}


def test_an_assignment_body_is_one_query_whatever_the_hit_size(make_study, django_assert_num_queries):
    from judgments.apis import assignment_output
    from judgments.assignments import assignment_start
    from judgments.models import Assignment

    study = make_study(n_test=20, n_sentinels=4, n_practice=2, config={"hit_size": 20})
    a = assignment_start(study=study, platform="anonymous", worker_id="w").assignment
    a = Assignment.objects.select_related("study").get(pk=a.pk)
    with django_assert_num_queries(1):
        body = assignment_output(a)
    assert len(body["trials"]) == a.n_trials > 20


@pytest.mark.parametrize("kind", ["2afc", "jnd"])
def test_a_new_assignment_body_from_memory_equals_the_stored_one(make_study, django_assert_num_queries, kind):
    """A start builds its body from the trials it just inserted, without reading them back; the body is the
    one the database would give (images by side, practice answers, positions, ids)."""
    from judgments.apis import assignment_output
    from judgments.assignments import assignment_start
    from judgments.models import Assignment

    study = make_study(kind=kind, n_test=12, n_sentinels=3, n_practice=2, config={"hit_size": 10})
    result = assignment_start(study=study, platform="anonymous", worker_id="w")
    with django_assert_num_queries(0):
        fresh = assignment_output(result.assignment, result.trials)
    stored = assignment_output(Assignment.objects.select_related("study").get(pk=result.assignment.pk))
    assert fresh == stored and len(fresh["trials"]) == result.assignment.n_trials
    assert any(t["practice"] and "answer" in t for t in fresh["trials"])


def test_an_oversized_or_mislabelled_answer_body_gets_a_json_4xx_and_stores_nothing(make_study):
    """The answer parses its own body (core.parsers.json_body): over 64 KiB it is a 413, a Content-Length
    that is not a number a 400, each with a message (not Django's HTML page, and no traceback logged)."""
    from rest_framework.test import APIClient

    from core.parsers import MAX_BODY_BYTES
    from judgments.assignments import assignment_start

    study = make_study(n_test=2, n_sentinels=0, n_practice=0)
    a = assignment_start(study=study, platform="anonymous", worker_id="w").assignment
    trial = a.trials.first()
    url = f"/api/v1/assignments/{a.token}/judgments/"
    body = {"trial": trial.public_id, "response": "left", "rt_ms": 700, "idempotency_key": "abcdefgh12"}
    client = APIClient()
    big = json.dumps({**body, "display": {"pad": "x" * MAX_BODY_BYTES}})
    r = client.post(url, big, content_type="application/json")
    assert r.status_code == 413 and "at most" in r.json()["message"], r.content
    huge = json.dumps({**body, "display": {"pad": "x" * 3_000_000}})  # past Django's own 2.5 MB limit too
    r = client.post(url, huge, content_type="application/json")
    assert r.status_code == 413 and r.json()["extra"]["field"] == "body"
    r = client.post(url, json.dumps(body), content_type="application/json", CONTENT_LENGTH="12abc")
    assert r.status_code == 400 and "Content-Length" in r.json()["message"]
    assert not trial.__class__.objects.get(pk=trial.pk).answered
    r = client.post(url, json.dumps(body), content_type="application/json")
    assert r.status_code == 201, r.content
