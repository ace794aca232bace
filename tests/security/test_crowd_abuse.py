"""Attacks on the assignment engine from a public crowd link: blocking a study with anonymous starts,
holding leases with heartbeats, hijacking a worker's assignment, finding studies from `/`, and leases a
rejection left behind. Each test performs the attack and asserts it now fails."""

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from judgments.assignments import assignment_start
from judgments.models import Assignment
from judgments.qc import assignment_reject
from judgments.selectors import open_leases
from studies.models import Item, Study

pytestmark = pytest.mark.django_db
ATTACKER = "198.51.100.66"


def start(client, study, addr=ATTACKER, **body):
    payload = {"platform": "anonymous", "consent": True, **body}
    return client.post(f"/api/v1/studies/{study.pk}/assignments/", payload, format="json", REMOTE_ADDR=addr)


def small_study(make_study, **config):
    """20 test items, one judgment each, 4 per HIT: five HITs use the whole study up."""
    return make_study(
        n_test=20,
        n_sentinels=0,
        n_practice=0,
        config={"hit_size": 4, "judgments_per_item": {"train": 1, "val": 1}, **config},
    )


def test_anonymous_starts_from_one_client_hit_the_cap_and_a_prolific_participant_still_gets_work(
    make_study, settings
):
    """The attack: start anonymous HITs (a fresh worker id each time, rotating X-Forwarded-For) until the
    study has no work left for real participants."""
    assert settings.PERCEPTLAB_CROWD["OPEN_PER_CLIENT"] == 3
    study = small_study(make_study)
    client = APIClient()
    codes = [start(client, study, HTTP_X_FORWARDED_FOR=f"10.1.{k}.1").status_code for k in range(6)]
    assert codes == [201, 201, 201, 409, 409, 409], codes
    refused = start(client, study)
    assert refused.json()["extra"]["code"] == "too_many_open" and "unfinished" in refused.json()["message"]
    # other platforms from the same client are capped as well (fake PIDs cost nothing)
    fake = start(
        client, study, platform="prolific", worker_id="FAKEPID", study_id="S", session_id="FAKESESSION"
    )
    assert fake.status_code == 409
    assert Assignment.objects.filter(study=study, status="started").count() == 3
    real = start(
        client,
        study,
        addr="203.0.113.20",
        platform="prolific",
        worker_id="REALPID",
        study_id="S",
        session_id="REALSESSION",
    )
    assert real.status_code == 201, real.content
    assert len(real.json()["trials"]) == 4


@pytest.mark.parametrize(
    "address",
    ["2001:db8:5:6::{k:x}", "2001:db8:5:{k:x}::1", "2001:db8:5:{k:x}00::1"],
    ids=["within-a-64", "across-64s", "across-56s"],
)
def test_an_ipv6_attacker_cannot_rotate_addresses_within_its_48(make_study, address):
    """The attack: a tunnel broker's free /48 holds 65,536 /64s; one new address (or /64, or /56) per
    start."""
    study = small_study(make_study)
    client = APIClient()
    codes = [start(client, study, addr=address.format(k=k + 1)).status_code for k in range(5)]
    assert codes == [201, 201, 201, 409, 409], codes
    assert start(client, study, addr="2001:db8:6::1").status_code == 201  # another network is another client


def test_heartbeats_alone_do_not_keep_a_lease_past_the_bound(make_study, monkeypatch):
    """The attack: start HITs and keep them alive with heartbeats only (never answering), forever."""
    clock = [timezone.now()]
    monkeypatch.setattr(timezone, "now", lambda: clock[0])
    study = small_study(make_study, lease_ttl_s=900)
    client = APIClient()
    body = start(client, study).json()
    token = body["token"]
    codes = []
    for _ in range(15):  # a heartbeat a minute, for a quarter of an hour
        clock[0] += timedelta(seconds=60)
        codes.append(client.post(f"/api/v1/assignments/{token}/heartbeat/").status_code)
    assert codes[:4] == [200] * 4 and set(codes[5:]) == {410}, codes  # gone after the 5-minute first lease
    # the next start in the study (or the periodic sweep) releases the held items
    assert start(client, study, addr="203.0.113.30").status_code == 201
    assert Assignment.objects.get(token=token).status == "expired"
    assert sum(open_leases(study=study).values()) == 4  # only the new HIT's


def test_after_an_answer_heartbeats_extend_only_up_to_one_ttl_past_it(make_study, monkeypatch):
    """An annotator who answered keeps the lease while pausing, but no longer than lease_ttl_s after the
    last answer, however many heartbeats follow."""
    clock = [timezone.now()]
    monkeypatch.setattr(timezone, "now", lambda: clock[0])
    study = small_study(make_study, lease_ttl_s=600)
    client = APIClient()
    body = start(client, study).json()
    token, trial = body["token"], body["trials"][0]
    clock[0] += timedelta(seconds=60)
    answered_at = clock[0]
    r = client.post(
        f"/api/v1/assignments/{token}/judgments/",
        {"trial": trial["id"], "response": "left", "rt_ms": 800, "idempotency_key": "k" * 12},
        format="json",
    )
    assert r.status_code == 201
    last = None
    for _ in range(20):
        clock[0] += timedelta(seconds=60)
        r = client.post(f"/api/v1/assignments/{token}/heartbeat/")
        if r.status_code != 200:
            break
        last = r.json()["lease_expires_at"]
    assert r.status_code == 410
    assert last is not None and Assignment.objects.get(
        token=token
    ).lease_expires_at <= answered_at + timedelta(seconds=600)


def test_resuming_is_bounded_too(make_study, monkeypatch):
    """Starting again with the same anonymous worker id (a resume) must not extend the lease either."""
    clock = [timezone.now()]
    monkeypatch.setattr(timezone, "now", lambda: clock[0])
    study = small_study(make_study)
    client = APIClient()
    body = start(client, study).json()
    tokens = []
    for _ in range(5):
        clock[0] += timedelta(seconds=60)
        tokens.append(start(client, study, worker_id=body["worker_id"]).json()["token"])
    assert tokens[:4] == [body["token"]] * 4 and tokens[4] != body["token"]  # minute 5: expired, a new HIT
    assert Assignment.objects.get(token=body["token"]).status == "expired"


def _as(client, study, platform, session, addr):
    if platform == "prolific":
        return start(
            client,
            study,
            addr=addr,
            platform="prolific",
            worker_id="VICTIMPID",
            study_id="S",
            session_id=session,
        )
    return start(
        client,
        study,
        addr=addr,
        platform="mturk",
        worker_id="AVICTIM",
        assignment_id=session,
        hit_id="H",
        turk_submit_to="https://www.mturk.com",
    )


@pytest.mark.parametrize("platform", ["prolific", "mturk"])
def test_same_worker_id_with_another_session_does_not_get_the_live_token(make_study, platform):
    """The attack: start with the victim's PROLIFIC_PID (or MTurk workerId, semi-public) and a session of
    one's own, to receive the victim's live assignment token."""
    study = small_study(make_study)
    client = APIClient()
    victim = _as(client, study, platform, "SESSION-VICTIM", "203.0.113.40")
    assert victim.status_code == 201
    token = victim.json()["token"]
    hijack = _as(client, study, platform, "SESSION-ATTACKER", ATTACKER)
    assert hijack.status_code == 201 and hijack.json()["token"] != token
    assert token not in hijack.content.decode()
    assert (
        Assignment.objects.get(token=token).status == "returned"
    )  # its items are free again, not the attacker's


@pytest.mark.parametrize("platform", ["prolific", "mturk"])
def test_a_stranger_starting_first_with_a_participants_id_cannot_lock_them_out(make_study, platform):
    """The attack: start first with a participant's (semi-public) worker id and a made-up session, and keep
    answering, so that the real participant's own session is refused for as long as the lease lives."""
    study = small_study(make_study)
    client = APIClient()
    squatter = _as(client, study, platform, "SESSION-FAKE", ATTACKER)
    assert squatter.status_code == 201
    real = _as(client, study, platform, "SESSION-REAL", "203.0.113.40")
    assert real.status_code == 201 and real.json()["token"] != squatter.json()["token"]
    assert Assignment.objects.get(token=squatter.json()["token"]).status == "returned"
    # the squatter's token is dead: it can neither answer nor resume into the participant's new HIT
    trial = squatter.json()["trials"][0]["id"]
    r = client.post(
        f"/api/v1/assignments/{squatter.json()['token']}/judgments/",
        {"trial": trial, "response": "left", "rt_ms": 900, "idempotency_key": "k" * 10},
        format="json",
    )
    assert r.status_code == 409


def test_a_rejected_session_cannot_start_again_and_be_paid_twice(make_study):
    """The attack: after the researcher rejects a Prolific session, start again in the same session to get a
    fresh HIT, which the completions list would then show as approvable."""
    study = small_study(make_study)
    client = APIClient()
    first = _as(client, study, "prolific", "SESS-X", ATTACKER)
    assignment_reject(assignment=Assignment.objects.get(token=first.json()["token"]))
    again = _as(client, study, "prolific", "SESS-X", ATTACKER)
    assert again.status_code == 200 and again.json()["token"] == first.json()["token"]
    assert again.json()["status"] == "rejected" and again.json()["completion"] is None
    assert Assignment.objects.filter(study=study).count() == 1


def test_the_home_page_lists_no_study_ids_but_the_demo(make_study, client):
    """The attack: read every active study's id from `/` to start (and hold) its work."""
    real = make_study(n_test=2, n_sentinels=0, n_practice=0, name="Real study")
    demo = make_study(n_test=2, n_sentinels=0, n_practice=0, name="Demo study")
    Study.objects.filter(pk=demo.pk).update(is_demo=True)
    html = client.get("/").content.decode()
    assert str(real.pk) not in html and "Real study" not in html
    assert str(demo.pk) in html


def test_rejecting_a_started_assignment_releases_its_leases(make_study):
    """Rejecting (admin/API) a HIT still in progress used to leave its items leased."""
    study = small_study(make_study)
    a = assignment_start(study=study, platform="anonymous", worker_id="spammer").assignment
    assert sum(open_leases(study=study).values()) == 4
    assignment_reject(assignment=a)
    assert Assignment.objects.get(pk=a.pk).status == "rejected"
    assert open_leases(study=study) == {}
    assert sum(Item.objects.filter(study=study).values_list("n_open", flat=True)) == 0
    for w in range(5):  # the whole study is free again
        assert len(assignment_start(study=study, platform="anonymous", worker_id=f"real-{w}").trials) == 4


@pytest.mark.parametrize(
    "platform, extra",
    [
        ("anonymous", {}),
        (
            "mturk",
            {
                "worker_id": "A1",
                "assignment_id": "AS1",
                "hit_id": "H1",
                "turk_submit_to": "https://www.mturk.com",
            },
        ),
    ],
)
def test_a_prolific_only_study_admits_no_other_platform(make_study, platform, extra):
    study = small_study(make_study, platforms=["prolific"])
    client = APIClient()
    r = start(client, study, platform=platform, **extra)
    assert (
        r.status_code == 403 and r.json()["extra"]["code"] == "platform" and "prolific" in r.json()["message"]
    )
    assert not Assignment.objects.exists()
    ok = start(client, study, platform="prolific", worker_id="P1", study_id="S", session_id="SE")
    assert ok.status_code == 201
    preview = start(
        client,
        study,
        platform="mturk",
        worker_id="",
        assignment_id="ASSIGNMENT_ID_NOT_AVAILABLE",
        hit_id="H",
        turk_submit_to="https://www.mturk.com",
    )
    assert preview.status_code == 403


@pytest.mark.parametrize("value", [[], ["prolific", "prolific"], ["simulated"], "prolific", [1]])
def test_bad_platform_lists_are_refused_with_a_message(value):
    from core.exceptions import ApplicationError
    from studies.collection import collection_config

    with pytest.raises(ApplicationError, match="platforms"):
        collection_config("2afc", {"platforms": value})


@pytest.mark.integration
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_starts_from_one_client_cannot_slip_past_the_cap(postgres, make_study):
    """The attack, in parallel: 12 starts from one address at the same instant, hoping that each counts the
    open assignments before any other commits. On PostgreSQL starts from one client take turns."""
    import threading

    from django.db import connection

    from core.exceptions import ApplicationError

    study = make_study(
        n_test=60,
        n_sentinels=0,
        n_practice=0,
        config={"hit_size": 2, "judgments_per_item": {"train": 1, "val": 1}},
    )
    barrier, results, lock = threading.Barrier(12), [], threading.Lock()

    def run(k):
        try:
            barrier.wait()
            try:
                assignment_start(study=study, platform="anonymous", worker_id=f"bot-{k}", client_ip=ATTACKER)
                outcome = "served"
            except ApplicationError as exc:
                outcome = exc.extra.get("code")
            with lock:
                results.append(outcome)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(k,)) for k in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sorted(results) == ["served"] * 3 + ["too_many_open"] * 9, results
    assert Assignment.objects.filter(study=study, status="started").count() == 3


@pytest.mark.parametrize("submit_to", ["https://[", "https://[::1", "https://www.mturk.com:99999"])
def test_a_malformed_turk_submit_to_is_a_400_not_a_500(make_study, submit_to):
    """The attack: a turkSubmitTo that urllib cannot parse (an unclosed IPv6 bracket, a port out of range)."""
    study = small_study(make_study)
    r = start(
        APIClient(),
        study,
        platform="mturk",
        worker_id="AWORKER",
        assignment_id="A1",
        hit_id="H",
        turk_submit_to=submit_to,
    )
    assert r.status_code == 400 and r.json()["extra"]["field"] == "turk_submit_to", r.content
