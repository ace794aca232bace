"""The demo's simulated crowd (manage.py demo_crowd, started by rundev): paced answers through the real
API, waiting for its study's build, and once finished an export, never a second run."""

import io

import pytest
from django.core.management import call_command

from core.exceptions import ApplicationError
from crowdsim.services import demo_crowd_finish, demo_crowd_finished, demo_crowd_wait_built
from exports.models import Export
from studies.models import Study
from training.models import TrainingState

pytestmark = pytest.mark.django_db


def _crowd_study(make_study, **kw):
    study = make_study(
        kind="2afc",
        n_test=8,
        n_sentinels=4,
        n_practice=0,
        config={
            "simulation": True,
            "hit_size": 4,
            "judgments_per_item": {"train": 1, "val": 1},
            "training": {"every": None},
        },
        **kw,
    )
    Study.objects.filter(pk=study.pk).update(is_demo=True)
    study.refresh_from_db()
    return study


@pytest.mark.django_db(transaction=True)
def test_a_paced_crowd_waits_before_every_answer(live_server, make_study, monkeypatch):
    from crowdsim import simulation

    study = _crowd_study(make_study)
    waits = []
    monkeypatch.setattr(simulation.time, "sleep", waits.append)  # retries sleep < 6 s; the pace 50-150 s
    result = simulation.run_crowd(
        base_url=live_server.url,
        study_id=str(study.pk),
        n_workers=2,
        spammers=0.0,
        concurrency=1,
        replay_rate=0.0,
        pace_s=100.0,
    )
    paced = [w for w in waits if w >= 6]
    assert result.judgments >= 8 and len(paced) == result.judgments
    assert all(50 <= w <= 150 for w in paced)


def test_the_crowd_waits_for_its_build_and_reports_a_failed_one(make_study):
    study = _crowd_study(make_study, active=False)
    Study.objects.filter(pk=study.pk).update(status=Study.Status.BUILDING)
    with pytest.raises(ApplicationError, match="still building"):
        demo_crowd_wait_built(study_id=study.pk, timeout_s=0.05, poll_s=0.01)
    Study.objects.filter(pk=study.pk).update(status=Study.Status.FAILED, build_error="no photos")
    with pytest.raises(ApplicationError, match="no photos"):
        demo_crowd_wait_built(study_id=study.pk, timeout_s=1)
    Study.objects.filter(pk=study.pk).update(status=Study.Status.ACTIVE)
    assert demo_crowd_wait_built(study_id=study.pk).pk == study.pk


def test_finishing_retrains_and_exports_as_the_admin(make_study, django_user_model, captured_tasks):
    admin = django_user_model.objects.create_superuser(username="admin", password="pw-admin-12345")
    study = _crowd_study(make_study)
    assert not demo_crowd_finished(study=study)
    export = demo_crowd_finish(study=study, owner=admin)
    assert export.created_by == admin and export.study == study
    assert demo_crowd_finished(study=study)
    assert TrainingState.objects.get(study=study).queued  # a last retrain on every judgment


def test_the_command_does_nothing_once_the_crowd_finished(make_study):
    out = io.StringIO()
    call_command("demo_crowd", "--url", "http://127.0.0.1:9", stdout=out)
    assert "no simulated demo study" in out.getvalue()
    study = _crowd_study(make_study)
    Export.objects.create(study=study, version=1, status=Export.Status.DONE)
    call_command("demo_crowd", "--url", "http://127.0.0.1:9", stdout=out)  # nothing listens there
    assert "finished in an earlier run" in out.getvalue()
