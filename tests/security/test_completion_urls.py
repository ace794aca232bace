"""Attacks through the Prolific completion URL (Study.config["prolific_completion_url"]): a stray `{}` or
another format field made every submit a 500 after the assignment was already marked submitted; a URL on
another host sends paid participants to the attacker. Refused when saved; a stored bad URL (rows saved
before the rule, or edited by hand) never breaks a submit."""

from __future__ import annotations

import uuid

import pytest
from rest_framework.test import APIClient

from judgments.models import Assignment
from studies.models import Study

pytestmark = pytest.mark.django_db
BAD_URLS = [
    "https://app.prolific.com/submissions/complete?cc={code}{}",
    "https://app.prolific.com/submissions/complete?cc={code}&x={0}",
    "https://app.prolific.com/submissions/complete?cc={code.__class__}",
    "https://app.prolific.com/submissions/complete?cc={code}{code}",
    "https://app.prolific.com/submissions/complete?cc={{code}}",
    "https://app.prolific.com/submissions/complete?cc=FIXED",
    "http://app.prolific.com/submissions/complete?cc={code}",
    "https://evil.example/complete?cc={code}",
    "https://app.prolific.com.evil.example/?cc={code}",
    "https://app.prolific.com@evil.example/?cc={code}",
    "https://app.prolific.com:8443/?cc={code}",
    "javascript://app.prolific.com/%0aalert(1)//{code}",
    "https://app.prolific.com/ complete?cc={code}",
]


@pytest.fixture
def researcher_client(researcher_carol):
    client = APIClient()
    client.force_authenticate(researcher_carol)
    return client


@pytest.mark.parametrize("url", BAD_URLS)
def test_a_bad_completion_url_is_refused_when_saved(researcher_client, make_study, researcher_carol, url):
    study = make_study(n_test=2, n_sentinels=1, n_practice=0, owner=researcher_carol)
    before = Study.objects.get(pk=study.pk).config
    r = researcher_client.patch(
        f"/api/v1/studies/{study.pk}/", {"config": {"prolific_completion_url": url}}, format="json"
    )
    assert r.status_code == 400, r.content
    assert (
        r.json()["extra"]["field"] == "config.prolific_completion_url"
        and "prolific_completion_url" in r.json()["message"]
    )
    assert Study.objects.get(pk=study.pk).config == before
    r = researcher_client.post(
        "/api/v1/studies/",
        {"name": "x", "kind": "2afc", "config": {"prolific_completion_url": url}},
        format="json",
    )
    assert r.status_code == 400 and r.json()["extra"]["field"] == "config.prolific_completion_url"
    assert not Study.objects.filter(name="x").exists()


def test_a_good_completion_url_is_accepted_and_used(researcher_client, make_study, researcher_carol):
    study = make_study(n_test=2, n_sentinels=1, n_practice=0, owner=researcher_carol)
    url = "https://app.prolific.co/submissions/complete?cc={code}&src=perceptlab"
    r = researcher_client.patch(
        f"/api/v1/studies/{study.pk}/", {"config": {"prolific_completion_url": url}}, format="json"
    )
    assert r.status_code == 200, r.content
    done = _complete_as_prolific(study)
    code = Study.objects.get(pk=study.pk).collection["completion_code"]
    assert done.status_code == 200
    assert done.json()["completion"]["redirect_url"] == url.replace("{code}", code)


def _complete_as_prolific(study):
    client = APIClient()
    body = client.post(
        f"/api/v1/studies/{study.pk}/assignments/",
        {
            "platform": "prolific",
            "consent": True,
            "worker_id": "PID-1",
            "study_id": "S",
            "session_id": "SESSION-1",
        },
        format="json",
    ).json()
    for trial in body["trials"]:
        r = client.post(
            f"/api/v1/assignments/{body['token']}/judgments/",
            {"trial": trial["id"], "response": "left", "rt_ms": 700, "idempotency_key": uuid.uuid4().hex},
            format="json",
        )
        assert r.status_code == 201
    return client.post(f"/api/v1/assignments/{body['token']}/submit/")


@pytest.mark.parametrize(
    "url", [u for u in BAD_URLS if "{code}" in u and u.startswith("https://")]
)  # the old rule
def test_a_stored_bad_completion_url_never_breaks_the_submit(make_study, url):
    study = make_study(n_test=2, n_sentinels=1, n_practice=0)
    Study.objects.filter(pk=study.pk).update(
        config={**study.config, "prolific_completion_url": url}
    )  # an old row
    done = _complete_as_prolific(study)
    assert done.status_code == 200, done.content
    body = done.json()
    assert body["status"] == "submitted" and body["completion"]["code"] == study.config["completion_code"]
    assert "redirect_url" not in body["completion"]  # never sent to a URL that fails today's rule
    assignment = Assignment.objects.get(study=study)
    assert assignment.status == Assignment.Status.SUBMITTED
    # the participant's page reloads: the detail answers too
    again = APIClient().get(f"/api/v1/assignments/{assignment.token}/")
    assert again.status_code == 200 and again.json()["completion"]["code"] == study.config["completion_code"]


def test_the_admin_refuses_a_bad_completion_url_too(make_study):
    from studies.admin import StudyAdminForm

    study = make_study(n_test=2, n_sentinels=1, n_practice=0)
    data = {
        "name": study.name,
        "kind": study.kind,
        "status": study.status,
        "build_config": "{}",
        "build_error": "",
        "build_progress": "{}",
        "config": '{"prolific_completion_url": "https://app.prolific.com/?cc={code}{}"}',
    }
    form = StudyAdminForm(data=data, instance=study)
    assert not form.is_valid() and "prolific_completion_url" in str(form.errors["config"])
    data["config"] = '{"prolific_completion_url": "https://app.prolific.com/?cc={code}"}'
    assert StudyAdminForm(data=data, instance=Study.objects.get(pk=study.pk)).is_valid()


def test_a_stored_foreign_turk_submit_to_gets_no_form(make_study):
    """Defence in depth for rows that bypassed the start-time check (a restored archive, a hand edit)."""
    from judgments.assignments import assignment_start
    from judgments.qc import completion_for

    study = make_study(n_test=2, n_sentinels=1, n_practice=0)
    a = assignment_start(
        study=study,
        platform="mturk",
        worker_id="W1",
        platform_info={"hit_id": "H", "assignment_id": "A", "turk_submit_to": "https://www.mturk.com"},
    ).assignment
    assert completion_for(a)["mturk_form"]["action"] == "https://www.mturk.com/mturk/externalSubmit"
    for bad in ("https://evil.example", "https://[broken", None, 7):
        a.platform_info = {**a.platform_info, "turk_submit_to": bad}
        out = completion_for(a)
        assert "mturk_form" not in out and out["code"] == a.completion_code
