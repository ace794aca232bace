"""Closing a study: final (no new assignments, no restart), while started HITs, exports and training go on."""

import pytest

from core.exceptions import ApplicationError
from exports.services import export_build, export_create
from judgments.assignments import assignment_start
from judgments.models import Assignment
from judgments.qc import assignment_submit
from studies.models import Study
from studies.services import study_close, study_pause, study_start

pytestmark = pytest.mark.django_db


@pytest.fixture
def study(make_study, researcher_carol):
    return make_study(owner=researcher_carol, n_test=8, n_sentinels=2, n_practice=1, config={"hit_size": 4})


def test_it_closes_for_good_and_refuses_a_restart(study):
    study_close(study=study)
    study.refresh_from_db()
    assert study.status == Study.Status.CLOSED
    with pytest.raises(ApplicationError, match="closed for good") as exc:
        study_start(study=study)
    assert exc.value.status_code == 409
    with pytest.raises(ApplicationError, match="only an active study can be paused"):
        study_pause(study=study)
    assert study_close(study=study).status == Study.Status.CLOSED  # closing again changes nothing
    study.refresh_from_db()
    assert study.status == Study.Status.CLOSED


def test_it_closes_paused_and_draft_studies_but_not_a_running_build(make_study, study):
    study_pause(study=study)
    assert study_close(study=study).status == Study.Status.CLOSED
    draft = make_study(active=False, n_test=2, n_sentinels=0, n_practice=0)
    assert study_close(study=draft).status == Study.Status.CLOSED
    building = make_study(active=False, n_test=2, n_sentinels=0, n_practice=0)
    Study.objects.filter(pk=building.pk).update(status=Study.Status.BUILDING)
    building.refresh_from_db()
    with pytest.raises(ApplicationError, match="still being built"):
        study_close(study=building)
    building.refresh_from_db()
    assert building.status == Study.Status.BUILDING


def test_it_refuses_new_assignments_with_a_clear_409(study):
    study_close(study=study)
    with pytest.raises(ApplicationError, match="this study is closed and takes no work now") as exc:
        assignment_start(study=study, platform="anonymous", worker_id="late")
    assert exc.value.status_code == 409 and exc.value.extra["code"] == "study_inactive"
    assert not Assignment.objects.filter(study=study).exists()


def test_the_annotator_api_answers_409_on_a_closed_study(study, api_client):
    study_close(study=study)
    r = api_client.post(
        f"/api/v1/studies/{study.pk}/assignments/", {"platform": "anonymous", "consent": True}, format="json"
    )
    assert r.status_code == 409 and "closed" in r.json()["message"]


def test_started_hits_still_finish_and_exports_and_training_still_work(
    study, researcher_carol, answer_trials, truthful
):
    started = assignment_start(study=study, platform="anonymous", worker_id="early").assignment
    study_close(study=study)
    answer_trials(started, truthful)
    submitted = assignment_submit(token=started.token)
    assert submitted.status == Assignment.Status.SUBMITTED
    export = export_build(export=export_create(study=study, user=researcher_carol))
    assert export.status == "done" and export.summary["n_judgments"] > 0

    from training.triggers import training_request

    assert training_request(study=study, force=True) in (True, False)  # queued, no refusal


def test_the_close_api_is_the_owners_and_has_the_start_and_pause_shape(
    study, api_client, researcher_carol, researcher_dave
):
    api_client.force_authenticate(researcher_dave)
    assert api_client.post(f"/api/v1/studies/{study.pk}/close/").status_code == 404
    api_client.force_authenticate(None)
    assert api_client.post(f"/api/v1/studies/{study.pk}/close/").status_code in (401, 403)
    study.refresh_from_db()
    assert study.status == Study.Status.ACTIVE
    api_client.force_authenticate(researcher_carol)
    r = api_client.post(f"/api/v1/studies/{study.pk}/close/")
    assert r.status_code == 200 and r.json()["status"] == "closed" and r.json()["id"] == str(study.pk)
    assert set(r.json()) == set(api_client.get(f"/api/v1/studies/{study.pk}/").json())  # start/pause's body
    r = api_client.post(f"/api/v1/studies/{study.pk}/start/")
    assert r.status_code == 409 and r.json()["extra"]["code"] == "closed"
