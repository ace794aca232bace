"""Approving and rejecting workers (judgments.reviews), through the API and the dashboard page. A rejection
rejects every HIT of the worker in the study, releases their leases, keeps them from starting new HITs, and
drops their judgments from the counts, the exports (unless include_excluded) and the training data."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from core.exceptions import ApplicationError
from exports.services import export_build, export_create
from judgments.assignments import assignment_start
from judgments.models import Assignment, Judgment, Trial, WorkerReview
from judgments.qc import assignment_submit
from judgments.reviews import worker_review_set
from judgments.selectors import open_leases, worker_stats
from studies.models import Item
from training.services import _votes, study_items

pytestmark = pytest.mark.django_db


@pytest.fixture
def study(make_study, researcher_carol, answer_trials, truthful):
    """Carol's study: worker-0 and worker-1 each answered and submitted one HIT; worker-2 holds a live one."""
    study = make_study(
        n_test=12, n_sentinels=2, n_practice=0, owner=researcher_carol, config={"hit_size": 4}, name="Carol's"
    )
    for w in range(2):
        a = assignment_start(study=study, platform="anonymous", worker_id=f"worker-{w}").assignment
        answer_trials(a, truthful)
        assignment_submit(token=a.token)
    live = assignment_start(study=study, platform="anonymous", worker_id="worker-2").assignment
    answer_trials(live, truthful, limit=2)
    return study


def _hash(study, worker_id: str) -> str:
    """The 16-character prefix worker_stats shows, for the worker with this platform id."""
    from judgments.workers import worker_hash

    return worker_hash(platform="anonymous", external_id=worker_id)[:16]


def _accepted(study) -> int:
    return sum(Item.objects.filter(study=study, role=Item.Role.TEST).values_list("n_judgments", flat=True))


def _test_judgments(study, worker_id: str) -> int:
    return Judgment.objects.filter(
        item__study=study, kind=Trial.Kind.TEST, worker__external_hash__startswith=_hash(study, worker_id)
    ).count()


def _export_counted(study, user, include_excluded=False) -> int:
    export = export_build(export=export_create(study=study, user=user, include_excluded=include_excluded))
    assert export.status == "done", export.error
    return export.summary["n_counted_judgments"]


def _training_votes(study) -> int:
    votes = _votes(study)
    return sum(item["n"] for split in ("train", "val") for item in study_items(study, split, votes))


def _api(user=None) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


def _review_url(study, worker_hash: str) -> str:
    return f"/api/v1/studies/{study.pk}/workers/{worker_hash}/review/"


# --- the three drops, and the leases ------------------------------------------------------------------
def test_it_drops_a_rejected_workers_judgments_from_the_counts(study, researcher_carol):
    before, theirs = _accepted(study), _test_judgments(study, "worker-0")
    assert theirs == 4
    worker_review_set(
        study=study,
        worker_hash=_hash(study, "worker-0"),
        decision="reject",
        reason="spam",
        user=researcher_carol,
    )
    assert _accepted(study) == before - theirs
    assert Assignment.objects.filter(study=study, status="rejected").count() == 1


def test_it_drops_a_rejected_workers_judgments_from_exports_unless_asked(study, researcher_carol):
    before = _export_counted(study, researcher_carol)
    worker_review_set(
        study=study,
        worker_hash=_hash(study, "worker-1"),
        decision="reject",
        reason="bot",
        user=researcher_carol,
    )
    assert _export_counted(study, researcher_carol) == before - _test_judgments(study, "worker-1")
    assert _export_counted(study, researcher_carol, include_excluded=True) == before


def test_it_drops_a_rejected_workers_judgments_from_training(study, researcher_carol):
    before = _training_votes(study)
    worker_review_set(
        study=study,
        worker_hash=_hash(study, "worker-0"),
        decision="reject",
        reason="x",
        user=researcher_carol,
    )
    assert _training_votes(study) == before - _test_judgments(study, "worker-0")


def test_it_releases_the_leases_of_a_rejected_workers_live_hit(
    study, researcher_carol, answer_trials, truthful
):
    live = Assignment.objects.get(study=study, status="started")
    leased = sum(open_leases(study=study).values())
    assert leased >= 2 and leased == sum(Item.objects.filter(study=study).values_list("n_open", flat=True))
    worker_review_set(
        study=study,
        worker_hash=_hash(study, "worker-2"),
        decision="reject",
        reason="x",
        user=researcher_carol,
    )
    live.refresh_from_db()
    assert live.status == "rejected" and live.excluded
    assert open_leases(study=study) == {}
    assert sum(Item.objects.filter(study=study).values_list("n_open", flat=True)) == 0
    accepted = _accepted(study)
    with pytest.raises(ApplicationError) as exc:  # the rejected HIT takes no more answers
        answer_trials(live, truthful)
    assert exc.value.status_code == 409 and _accepted(study) == accepted


def test_it_keeps_a_rejected_worker_from_starting_new_hits(study, researcher_carol):
    worker_review_set(
        study=study,
        worker_hash=_hash(study, "worker-0"),
        decision="reject",
        reason="x",
        user=researcher_carol,
    )
    with pytest.raises(ApplicationError) as exc:
        assignment_start(study=study, platform="anonymous", worker_id="worker-0")
    assert exc.value.status_code == 403 and exc.value.extra["code"] == "worker_rejected"
    r = _api().post(
        f"/api/v1/studies/{study.pk}/assignments/",
        {"platform": "anonymous", "consent": True, "worker_id": "worker-0"},
        format="json",
    )
    assert r.status_code == 403 and "rejected" in r.json()["message"]
    # others still can
    assert assignment_start(study=study, platform="anonymous", worker_id="worker-9").created


# --- the API --------------------------------------------------------------------------------------------
def test_it_approves_and_then_rejects_through_the_api(study, researcher_carol):
    url = _review_url(study, _hash(study, "worker-0"))
    r = _api(researcher_carol).post(url, {"decision": "approve"}, format="json")
    assert r.status_code == 200 and r.json()["decision"] == "approved"
    assert r.json()["worker"] == _hash(study, "worker-0") and r.json()["decided_by"] == "carol"
    r = _api(researcher_carol).post(url, {"decision": "reject", "reason": "late spam"}, format="json")
    assert r.status_code == 200 and r.json()["decision"] == "rejected" and r.json()["reason"] == "late spam"
    assert WorkerReview.objects.get(study=study).decision == "rejected"


def test_it_refuses_to_approve_a_rejected_worker(study, researcher_carol):
    url = _review_url(study, _hash(study, "worker-0"))
    _api(researcher_carol).post(url, {"decision": "reject", "reason": "spam"}, format="json")
    r = _api(researcher_carol).post(url, {"decision": "approve"}, format="json")
    assert r.status_code == 409 and "rejected" in r.json()["message"]
    assert WorkerReview.objects.get(study=study).decision == "rejected"


@pytest.mark.parametrize(
    "body",
    [
        {"decision": "reject"},
        {"decision": "reject", "reason": "   "},
        {"decision": "reject", "reason": "x" * 501},
        {"decision": "ban", "reason": "x"},
        {},
    ],
)
def test_it_refuses_bad_decisions(study, researcher_carol, body):
    r = _api(researcher_carol).post(_review_url(study, _hash(study, "worker-0")), body, format="json")
    assert r.status_code == 400 and r.json()["message"]
    assert not WorkerReview.objects.exists()
    assert not Assignment.objects.filter(status="rejected").exists()


@pytest.mark.parametrize("worker_hash", ["0" * 16, "zz" * 8, "abc", "<script>alert(1)</script>", "f" * 64])
def test_it_answers_404_for_unknown_or_malformed_workers(study, researcher_carol, worker_hash):
    r = _api(researcher_carol).post(
        _review_url(study, worker_hash), {"decision": "reject", "reason": "x"}, format="json"
    )
    assert r.status_code == 404


def test_it_hides_the_study_from_others_and_anonymous(study, researcher_dave):
    url = _review_url(study, _hash(study, "worker-0"))
    assert (
        _api(researcher_dave).post(url, {"decision": "reject", "reason": "x"}, format="json").status_code
        == 404
    )
    assert _api().post(url, {"decision": "reject", "reason": "x"}, format="json").status_code in (401, 403)
    assert not WorkerReview.objects.exists()
    assert not Assignment.objects.filter(status="rejected").exists()


def test_it_adds_the_review_to_worker_stats(study, researcher_carol):
    worker_review_set(
        study=study,
        worker_hash=_hash(study, "worker-0"),
        decision="reject",
        reason="spam",
        user=researcher_carol,
    )
    worker_review_set(
        study=study, worker_hash=_hash(study, "worker-1"), decision="approve", user=researcher_carol
    )
    rows = {w["worker"]: w for w in worker_stats(study=study)}
    assert rows[_hash(study, "worker-0")]["review"] == "rejected"
    assert rows[_hash(study, "worker-0")]["review_reason"] == "spam"
    assert rows[_hash(study, "worker-1")]["review"] == "approved"
    assert rows[_hash(study, "worker-2")]["review"] is None


# --- the page -------------------------------------------------------------------------------------------
def test_it_shows_the_workers_table_with_its_controls(study, researcher_carol, client):
    client.force_login(researcher_carol)
    r = client.get(f"/dashboard/{study.pk}/workers/")
    html = r.content.decode()
    assert r.status_code == 200 and 'id="workers"' in html
    for w in ("worker-0", "worker-1", "worker-2"):
        assert f'data-worker="{_hash(study, w)}"' in html
    assert 'class="approve' in html and 'class="reject"' in html and ">Reason</label>" in html
    fragment = client.get(f"/dashboard/{study.pk}/workers/", headers={"HX-Request": "true"}).content.decode()
    assert fragment.lstrip().startswith("<section") and "<html" not in fragment
    assert 'id="workers"' in client.get(f"/dashboard/{study.pk}/").content.decode()


def test_it_rejects_from_the_page_with_htmx_and_swaps_the_row(study, researcher_carol, client):
    client.force_login(researcher_carol)
    h = _hash(study, "worker-0")
    r = client.post(
        f"/dashboard/{study.pk}/workers/{h}/review/",
        {"decision": "reject", "reason": "random clicking"},
        headers={"HX-Request": "true"},
    )
    html = r.content.decode()
    assert r.status_code == 200 and html.lstrip().startswith("<tr") and f'data-worker="{h}"' in html
    assert "rejected: random clicking" in html and 'class="approve"' not in html
    r = client.post(
        f"/dashboard/{study.pk}/workers/{h}/review/", {"decision": "approve"}, headers={"HX-Request": "true"}
    )
    assert 'role="alert"' in r.content.decode() and "cannot be turned into an approval" in r.content.decode()
    assert WorkerReview.objects.get(study=study).decision == "rejected"


def test_it_works_without_javascript(study, researcher_carol, client):
    client.force_login(researcher_carol)
    h = _hash(study, "worker-1")
    r = client.post(f"/dashboard/{study.pk}/workers/{h}/review/", {"decision": "approve"})
    assert r.status_code == 302 and r["Location"] == f"/dashboard/{study.pk}/#workers"
    assert WorkerReview.objects.get(study=study).decision == "approved"
    r = client.post(f"/dashboard/{study.pk}/workers/{h}/review/", {"decision": "reject", "reason": ""})
    assert r.status_code == 302 and WorkerReview.objects.get(study=study).decision == "approved"
    page = client.get(r["Location"]).content.decode()
    assert "needs a reason" in page
    r = client.post(
        f"/dashboard/{study.pk}/workers/{h}/review/", {"decision": "reject", "reason": "x", "next": "workers"}
    )
    assert r["Location"] == f"/dashboard/{study.pk}/workers/"
    assert WorkerReview.objects.get(study=study).decision == "rejected"


def test_the_page_is_the_owners_only(study, researcher_dave, client):
    h = _hash(study, "worker-0")
    for path in (f"/dashboard/{study.pk}/workers/",):
        assert client.get(path).status_code == 302
    r = client.post(f"/dashboard/{study.pk}/workers/{h}/review/", {"decision": "reject", "reason": "x"})
    assert r.status_code == 302 and r["Location"].startswith("/accounts/login/")
    client.force_login(researcher_dave)
    assert client.get(f"/dashboard/{study.pk}/workers/").status_code == 404
    r = client.post(f"/dashboard/{study.pk}/workers/{h}/review/", {"decision": "reject", "reason": "x"})
    assert r.status_code == 404
    assert client.get(f"/dashboard/{study.pk}/workers/{h}/review/").status_code in (404, 405)
    assert not WorkerReview.objects.exists()
