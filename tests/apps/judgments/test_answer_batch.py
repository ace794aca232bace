"""The answer batch endpoint: several answers of one HIT per request, each stored as the single endpoint
stores it (own key, replayable), refusals reported per answer, malformed batches refused whole, the throttle
counting answers."""

import json
import uuid

import pytest
from rest_framework.test import APIClient

from judgments.answers import BATCH_MAX
from judgments.models import Assignment, Judgment

pytestmark = pytest.mark.django_db


@pytest.fixture
def client():
    return APIClient()


def start(client, study, **body):
    r = client.post(
        f"/api/v1/studies/{study.pk}/assignments/",
        {"platform": "anonymous", "consent": True, **body},
        format="json",
    )
    assert r.status_code == 201, r.content
    return r.json()


def one(trial, response="left", key=None):
    return {
        "trial": trial["id"],
        "response": response,
        "rt_ms": 650,
        "idempotency_key": key or uuid.uuid4().hex,
        "display": {"refresh_hz": 60},
    }


def batch(client, token, answers):
    return client.post(f"/api/v1/assignments/{token}/judgments/batch/", {"answers": answers}, format="json")


def test_a_whole_hit_goes_in_two_batches_and_completes(client, make_study):
    study = make_study(n_test=5, n_sentinels=2, n_practice=1)
    body = start(client, study)
    trials = body["trials"]
    first = batch(client, body["token"], [one(t, t.get("answer", "left")) for t in trials[:3]])
    assert first.status_code == 200, first.content
    results = first.json()["results"]
    assert [r["status"] for r in results] == [201, 201, 201]
    assert [r["trial"] for r in results] == [t["id"] for t in trials[:3]]
    assert results[0]["correct"] is True  # the practice trial, answered as its answer says
    assert [r["n_answered"] for r in results] == [1, 2, 3] and results[-1]["n_trials"] == len(trials)
    rest = batch(client, body["token"], [one(t) for t in trials[3:]]).json()["results"]
    assert all(r["stored"] and r["status"] == 201 and r["correct"] is None for r in rest)
    assert Judgment.objects.count() == len(trials)
    done = client.post(f"/api/v1/assignments/{body['token']}/submit/")
    assert done.status_code == 200 and done.json()["status"] == "submitted"


def test_a_retried_batch_replays_every_answer_and_stores_nothing_twice(client, make_study):
    study = make_study(n_test=4, n_sentinels=0, n_practice=0)
    body = start(client, study)
    answers = [one(t) for t in body["trials"]]
    assert [r["status"] for r in batch(client, body["token"], answers[:2]).json()["results"]] == [201, 201]
    again = batch(client, body["token"], answers).json()["results"]  # the lost response's batch, and more
    assert [(r["status"], r["replayed"]) for r in again] == [
        (200, True),
        (200, True),
        (201, False),
        (201, False),
    ]
    assert Judgment.objects.count() == 4
    assert Assignment.objects.get(token=body["token"]).n_answered == 4


def test_one_refused_answer_is_reported_and_the_others_still_go_in(client, make_study):
    study = make_study(n_test=4, n_sentinels=0, n_practice=0)
    body = start(client, study)
    other = start(client, study, worker_id="someone-else")
    t = body["trials"]
    assert batch(client, body["token"], [one(t[0], key="first-key-0")]).status_code == 200
    answers = [
        one(t[0], key="second-key-0"),  # answered already, under another key
        one(t[1]),
        {**one(t[2]), "response": "up"},  # not a 2AFC response
        one(other["trials"][0]),  # another HIT's trial
        one(t[3]),
    ]
    r = batch(client, body["token"], answers)
    assert r.status_code == 200
    results = r.json()["results"]
    assert [x["status"] for x in results] == [409, 201, 400, 400, 201]
    assert results[0]["extra"]["code"] == "answered" and not results[0]["stored"]
    assert "response" in results[2]["message"] and results[3]["message"]
    stored = set(Judgment.objects.values_list("trial__public_id", flat=True))
    assert stored == {t[0]["id"], t[1]["id"], t[3]["id"]}
    assert not Judgment.objects.filter(assignment__token=other["token"]).exists()


@pytest.mark.parametrize(
    "answers,needle",
    [
        ("not a list", "answers"),
        ("empty", "answers"),
        ("too many", "answers"),
        ("twice", "once"),
        ("bad rt", "answers[1]: rt_ms"),
        ("not an object", "answers[1]"),
    ],
)
def test_a_malformed_batch_is_refused_whole_with_a_message(client, make_study, answers, needle):
    study = make_study(n_test=3, n_sentinels=0, n_practice=0)
    body = start(client, study)
    t = body["trials"]
    answers = {
        "empty": [],
        "too many": [one(t[0]) for _ in range(BATCH_MAX + 1)],
        "twice": [one(t[0]), one(t[0])],
        "bad rt": [one(t[0]), {**one(t[1]), "rt_ms": "fast"}],
        "not an object": [one(t[0]), ["trial", t[1]["id"]]],
    }.get(answers, answers)
    r = client.post(
        f"/api/v1/assignments/{body['token']}/judgments/batch/", {"answers": answers}, format="json"
    )
    assert r.status_code == 400 and needle in r.json()["message"], r.content
    assert not Judgment.objects.exists()
    r = client.post(f"/api/v1/assignments/{body['token']}/judgments/batch/", [one(t[0])], format="json")
    assert r.status_code == 400 and not Judgment.objects.exists()


def test_a_batch_to_an_unknown_or_finished_hit_stores_nothing(client, make_study):
    study = make_study(n_test=2, n_sentinels=0, n_practice=0)
    body = start(client, study)
    answers = [one(t) for t in body["trials"]]
    assert batch(client, "x" * 32, answers).status_code == 404
    assert client.post(f"/api/v1/assignments/{body['token']}/return/").status_code == 200
    r = batch(client, body["token"], answers)
    assert r.status_code == 200 and all(not x["stored"] and x["status"] >= 400 for x in r.json()["results"])
    assert not Judgment.objects.exists()


def test_an_oversized_batch_body_is_a_413_before_it_is_read(client, make_study):
    study = make_study(n_test=2, n_sentinels=0, n_practice=0)
    body = start(client, study)
    huge = {"answers": [{**one(body["trials"][0]), "display": {"x": "y" * 200_000}}]}
    r = client.post(f"/api/v1/assignments/{body['token']}/judgments/batch/", huge, format="json")
    assert r.status_code == 413 and r.json()["message"]
    assert not Judgment.objects.exists()


def test_the_throttle_counts_a_batch_by_its_answers(client, make_study, throttle_rates):
    throttle_rates({"judgments": "5/min", "assignment_start": "100/min"})
    study = make_study(n_test=8, n_sentinels=0, n_practice=0)
    body = start(client, study)
    t = body["trials"]
    assert batch(client, body["token"], [one(x) for x in t[:4]]).status_code == 200  # 4 of 5
    refused = batch(client, body["token"], [one(x) for x in t[4:6]])  # 2 more would make 6
    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
    assert Judgment.objects.count() == 4
    assert batch(client, body["token"], [one(t[4])]).status_code == 200  # the fifth still fits
    assert client.post(f"/api/v1/assignments/{body['token']}/heartbeat/").status_code == 429
    # a body that cannot even be read still counts, before its error is answered
    other = start(client, study, worker_id="someone-else")["token"]
    url = f"/api/v1/assignments/{other}/judgments/batch/"
    codes = [client.post(url, "{nope", content_type="application/json").status_code for _ in range(6)]
    assert codes == [400] * 5 + [429]


def test_the_local_throttle_tells_a_refused_batch_when_it_fits(throttle_rates):
    """Without Redis (DRF's timestamp list): a batch of 3 when 4 of 5 are used must wait for the two oldest
    to leave the window, not for one."""
    from core.throttling import AssignmentThrottle

    throttle_rates({"judgments": "5/min"})
    clock = [1000.0]

    def ask(cost):
        view = type("View", (), {"kwargs": {"token": "d" * 40}, "throttle_weight": cost})()
        throttle = AssignmentThrottle()
        throttle.timer = lambda: clock[0]
        return throttle.allow_request(None, view), throttle

    for _ in range(4):  # one a second: 1000, 1001, 1002, 1003
        assert ask(1)[0] is True
        clock[0] += 1
    allowed, throttle = ask(3)  # at 1004: 4 + 3 > 5, the two oldest (1000, 1001) must go
    assert allowed is False and throttle.wait() == pytest.approx(1001 + 60 - 1004, abs=0.01)
    clock[0] = 1001 + 60.01
    assert ask(3)[0] is True


@pytest.mark.parametrize("where", ["display", "durations"])
def test_a_number_json_cannot_write_back_is_a_400_not_a_500(client, make_study, where):
    """1e309 parses as infinity, which neither JSON nor a jsonb column can hold: refused with the field
    named, on both endpoints, and nothing stored."""
    study = make_study(n_test=2, n_sentinels=0, n_practice=0)
    body = start(client, study)
    answer = json.dumps({**one(body["trials"][0]), where: {}}).replace(
        f'"{where}": {{}}', f'"{where}": {{"x": 1e309}}'
    )
    token = body["token"]
    single = client.post(f"/api/v1/assignments/{token}/judgments/", answer, content_type="application/json")
    assert single.status_code == 400 and where in single.json()["message"], single.content
    r = client.post(
        f"/api/v1/assignments/{token}/judgments/batch/",
        f'{{"answers": [{answer}]}}',
        content_type="application/json",
    )
    assert r.status_code in (200, 400), r.content
    if r.status_code == 200:
        assert r.json()["results"][0]["status"] == 400
    assert not Judgment.objects.exists()


def test_a_replay_in_a_batch_reports_the_count_after_the_batch(client, make_study):
    study = make_study(n_test=3, n_sentinels=0, n_practice=0)
    body = start(client, study)
    t = body["trials"]
    first = one(t[0], key="replayed-key-0")
    assert batch(client, body["token"], [first]).status_code == 200
    results = batch(client, body["token"], [one(t[1]), first]).json()["results"]
    assert [r["status"] for r in results] == [201, 200]
    assert [r["n_answered"] for r in results] == [2, 2]  # as the single endpoint would say after both


def test_a_key_used_twice_in_one_batch_stores_the_first_and_refuses_the_second(client, make_study):
    study = make_study(n_test=3, n_sentinels=0, n_practice=0)
    body = start(client, study)
    t = body["trials"]
    results = batch(client, body["token"], [one(t[0], key="same-key-99"), one(t[1], key="same-key-99")])
    assert [r["status"] for r in results.json()["results"]] == [201, 409]
    assert "another trial" in results.json()["results"][1]["message"]
    assert Judgment.objects.count() == 1


def test_an_unknown_token_is_a_404_whatever_its_answers(client, make_study):
    make_study(n_test=2, n_sentinels=0, n_practice=0)
    r = batch(client, "no-such-token", [{**one({"id": "x"}), "idempotency_key": "short"}])
    assert r.status_code == 404


def test_a_broken_invariant_is_not_reported_as_a_replay(make_study, monkeypatch):
    """Only another request's judgment for the same trial or key makes the write fall back to replays; any
    other refused write (a CHECK, a foreign key) is a bug, raised as it is, not a 409 'already answered'."""
    from django.db import IntegrityError

    from judgments import sql
    from judgments.answers import answer_input, judgments_submit_batch

    study = make_study(n_test=2, n_sentinels=0, n_practice=0)
    client = APIClient()
    body = start(client, study)

    def broken(*args, **kwargs):
        raise IntegrityError("CHECK constraint failed: item_n_open_not_negative")

    monkeypatch.setattr(sql, "store_answers", broken)
    with pytest.raises(IntegrityError):
        judgments_submit_batch(token=body["token"], answers=[answer_input(one(body["trials"][0]))])
