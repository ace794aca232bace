"""Attacks on continuous training: unbounded or mistyped training settings (Study.config["training"]),
retrain requests back to back, and a training claim wedged by a killed worker (a unit-level replay of the
kill; tests/integration/test_training_claim_recovery.py does it with a real worker and SIGKILL)."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from celery.exceptions import Retry
from django.utils import timezone
from rest_framework.test import APIClient

from studies.models import Study
from training.models import Evaluation, ModelVersion, TrainingState

pytestmark = pytest.mark.django_db
RANDOM_ALEX = {
    "every": None,
    "backbones": [{"net": "alex", "weights": "random"}],
    "baselines": ["l2_lab"],
    "official_lpips": False,
    "n_boot": 20,
    "min_steps": 20,
}


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.mark.parametrize(
    "training,field",
    [
        ({"n_boot": 1e9}, "n_boot"),
        ({"n_boot": 10**9}, "n_boot"),
        ({"n_boot": 0}, "n_boot"),
        ({"epochs": 10**9}, "epochs"),
        ({"epochs": 1e9}, "epochs"),
        ({"epochs_decay": 10**9}, "epochs_decay"),
        ({"epochs_decay": -1}, "epochs_decay"),
        ({"min_steps": 10**12}, "min_steps"),
        ({"lr": "x"}, "lr"),
        ({"lr": 1e9}, "lr"),
        ({"lr": 0}, "lr"),
        ({"lr": True}, "lr"),
        ({"every": 0}, "every"),
        ({"every": True}, "every"),
        ({"every": 10**12}, "every"),
        ({"official_lpips": "yes"}, "official_lpips"),
        ({"backbones": [{"net": "alex", "weights": "/etc/passwd"}]}, "backbones"),
        ({"backbones": [{"net": "alex", "weights": "kmeans:../../trunk.pth"}]}, "backbones"),
        ({"backbones": [{"net": "alex", "weights": "AUTO"}]}, "backbones"),
        ({"backbones": [{"net": "resnet152", "weights": "random"}]}, "backbones"),
        ({"backbones": [{"net": "alex", "weights": "random", "seed": 10**20}]}, "backbones"),
        ({"backbones": [{"net": "alex", "weights": "random"}] * 50}, "backbones"),
        ({"backbones": []}, "backbones"),
        ({"baselines": ["__import__('os').system('id')"]}, "baselines"),
        ({"baselines": ["l2_lab"] * 1000}, "baselines"),
        ({"baselines": "l2_lab"}, "baselines"),
    ],
)
def test_unbounded_or_mistyped_training_settings_are_refused(researcher_carol, make_study, training, field):
    r = client_for(researcher_carol).post(
        "/api/v1/studies/", {"name": "x", "kind": "2afc", "config": {"training": training}}, format="json"
    )
    assert r.status_code == 400 and r.json()["extra"]["field"] == f"config.training.{field}", r.json()
    assert f"training.{field}" in r.json()["message"]
    assert not Study.objects.exists()
    study = make_study(
        owner=researcher_carol, n_test=2, n_sentinels=0, n_practice=0
    )  # and the same through PATCH
    r = client_for(researcher_carol).patch(
        f"/api/v1/studies/{study.pk}/", {"config": {"training": training}}, format="json"
    )
    assert r.status_code == 400 and Study.objects.get(pk=study.pk).config == study.config


def test_the_training_caps_come_from_settings_and_name_the_cap(settings):
    from core.exceptions import ApplicationError
    from studies.collection import collection_config

    settings.PERCEPTLAB_TRAINING_LIMITS = {**settings.PERCEPTLAB_TRAINING_LIMITS, "epochs": 7}
    with pytest.raises(ApplicationError, match=r"1\.\.7"):
        collection_config("2afc", {"training": {"epochs": 8, "lr": 0.5}})
    assert collection_config("2afc", {"training": {"epochs": 7, "lr": 0.5}})["training"]["epochs"] == 7


def test_the_known_baselines_are_the_metric_packages_own():
    from metric.baselines import BASELINES
    from studies.collection import COMMON, TRAINING_BASELINES

    assert set(TRAINING_BASELINES) == set(BASELINES) and set(COMMON["training"]["baselines"]) <= set(
        BASELINES
    )


def test_forced_retrains_back_to_back_get_429_with_retry_after(
    researcher_carol, make_study, settings, captured_tasks, django_capture_on_commit_callbacks
):
    settings.PERCEPTLAB_MIN_RETRAIN_INTERVAL_S = 600
    study = make_study(owner=researcher_carol, n_test=2, n_sentinels=0, n_practice=0)
    carol = client_for(researcher_carol)
    with django_capture_on_commit_callbacks(execute=True):
        assert carol.post(f"/api/v1/studies/{study.pk}/train/", {}, format="json").status_code == 202
        r = carol.post(f"/api/v1/studies/{study.pk}/train/", {"variants": ["tune"]}, format="json")
    assert r.status_code == 429 and 590 <= int(r["Retry-After"]) <= 600, (r.status_code, r.content)
    assert r.json()["extra"]["retry_after_s"] == int(r["Retry-After"]) and "600 s" in r.json()["message"]
    assert captured_tasks == [("training.study_retrain", (str(study.pk),), {})]
    assert (
        TrainingState.objects.get(study=study).pending_variants == []
    )  # the refused request changed nothing
    # a finished run counts too; once the interval has passed, a request goes through
    TrainingState.objects.filter(study=study).update(
        queued=False,
        queued_at=timezone.now() - timedelta(hours=1),
        last_run_at=timezone.now() - timedelta(seconds=30),
    )
    assert carol.post(f"/api/v1/studies/{study.pk}/train/", {}, format="json").status_code == 429
    TrainingState.objects.filter(study=study).update(last_run_at=timezone.now() - timedelta(seconds=601))
    with django_capture_on_commit_callbacks(execute=True):
        assert carol.post(f"/api/v1/studies/{study.pk}/train/", {}, format="json").status_code == 202
    assert len(captured_tasks) == 2


def test_automatic_retrains_inside_the_interval_are_deferred(
    make_study, answer_trials, settings, captured_tasks, django_capture_on_commit_callbacks
):
    from judgments.assignments import assignment_start
    from training.triggers import judgments_added, retrain_due

    settings.PERCEPTLAB_MIN_RETRAIN_INTERVAL_S = 600
    study = make_study(
        n_test=6, n_sentinels=0, n_practice=0, config={"hit_size": 6, "training": {**RANDOM_ALEX, "every": 1}}
    )
    TrainingState.objects.create(study=study, last_run_at=timezone.now() - timedelta(seconds=10))
    with django_capture_on_commit_callbacks(execute=True):
        answer_trials(
            assignment_start(study=study, platform="anonymous", worker_id="w").assignment, lambda t, i: "p0"
        )
    assert captured_tasks == [] and not TrainingState.objects.get(study=study).queued
    TrainingState.objects.filter(study=study).update(last_run_at=timezone.now() - timedelta(seconds=601))
    with django_capture_on_commit_callbacks(execute=True):
        assert retrain_due() == 1  # the periodic check picks it up
        assert judgments_added(study_id=study.pk) is False  # queued once
    assert captured_tasks == [("training.study_retrain", (str(study.pk),), {})]


def judged_study(make_study, crowd, owner=None):
    rng = np.random.default_rng(0)
    study = make_study(
        owner=owner, n_test=12, n_sentinels=0, n_practice=0, config={"hit_size": 12, "training": RANDOM_ALEX}
    )
    crowd(study, 3, lambda t, i: ("p0", "p1")[int(rng.random() < 0.4)], prefix="w")
    return study


def test_a_wedged_claim_of_a_killed_worker_is_taken_over(
    make_study, crowd, settings, researcher_carol, captured_tasks, django_capture_on_commit_callbacks
):
    """The state a SIGKILL leaves: claimed, a version running, the heartbeat gone quiet, and the study
    queued by the redelivered job that found the claim. The next job takes it over and trains."""
    from training import services
    from training.tasks import study_retrain as task

    settings.PERCEPTLAB_TRAINING_STALE_S = 60
    study = judged_study(make_study, crowd, owner=researcher_carol)
    long_ago = timezone.now() - timedelta(hours=4)
    TrainingState.objects.create(
        study=study,
        running_since=long_ago,
        heartbeat_at=long_ago,
        claim="6" * 32,
        queued=True,
        queued_at=long_ago,
    )
    dead = ModelVersion.objects.create(study=study, backbone="alex", weights="random", version=1)
    result = task.apply(args=[str(study.pk)]).get()  # the redelivered message
    assert result["status"] == "done" and result["models"] == ["alex-random-lin v2"]
    assert ModelVersion.objects.get(pk=dead.pk).status == "failed"
    assert (
        ModelVersion.objects.get(study=study, version=2).status == "ready"
        and Evaluation.objects.filter(study=study).exists()
    )
    state = TrainingState.objects.get(study=study)
    assert state.running_since is None and state.claim is None and state.runs == 1 and not state.queued
    with django_capture_on_commit_callbacks(execute=True):
        r = client_for(researcher_carol).post(f"/api/v1/studies/{study.pk}/train/", {}, format="json")
    assert r.status_code == 202 and r.json() == {"queued": True}
    assert services.training_request(study=study, force=True) is False  # queued already: one job, not two


def test_a_legacy_wedged_study_can_be_queued_again(
    make_study, captured_tasks, django_capture_on_commit_callbacks
):
    """Rows wedged before this fix (queued for good, no job coming) take a forced request again."""
    from training.triggers import training_request

    study = make_study(n_test=2, n_sentinels=0, n_practice=0)
    TrainingState.objects.create(study=study, queued=True)
    with django_capture_on_commit_callbacks(execute=True):
        assert training_request(study=study, force=True) is True
    assert captured_tasks == [("training.study_retrain", (str(study.pk),), {})]


def test_a_live_claim_is_respected_and_the_job_retries(make_study, crowd, settings, monkeypatch):
    from training.tasks import study_retrain as task

    settings.PERCEPTLAB_TRAINING_STALE_S, settings.PERCEPTLAB_TRAINING_HEARTBEAT_S = 60, 5
    study = judged_study(make_study, crowd)
    now = timezone.now()
    TrainingState.objects.create(
        study=study, running_since=now - timedelta(hours=2), heartbeat_at=now, claim="7" * 32
    )
    retries = []
    monkeypatch.setattr(task, "retry", lambda **kw: retries.append(kw) or Retry())
    with pytest.raises(Retry):
        task.run(str(study.pk))
    assert retries == [{"countdown": 10.0, "max_retries": None}]  # soon: the other job may end any moment
    assert not ModelVersion.objects.exists()  # no double run
    state = TrainingState.objects.get(study=study)
    assert state.queued and state.claim.hex == "7" * 32 and state.running_since == now - timedelta(hours=2)


@pytest.mark.django_db(transaction=True)
def test_a_running_job_keeps_its_heartbeat_fresh(make_study, crowd, settings, monkeypatch):
    """The heartbeat thread refreshes the claim while a long step (no progress reports) runs."""
    import time

    from training import services

    settings.PERCEPTLAB_TRAINING_HEARTBEAT_S = 0.05
    study = judged_study(make_study, crowd)
    beats = []

    def slow_retrain(study, progress, variants=()):
        first = TrainingState.objects.get(study=study).heartbeat_at
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # wait for a newer heartbeat (a bound, not a timing assertion)
            beat = TrainingState.objects.get(study=study).heartbeat_at
            if beat > first:
                beats.append((first, beat))
                break
            time.sleep(0.02)
        return {"study": str(study.pk), "status": "done", "n_judgments": 1}

    monkeypatch.setattr(services, "_retrain", slow_retrain)
    services.study_retrain(study=study)
    assert beats, "the heartbeat never moved"
    state = TrainingState.objects.get(study=study)
    assert state.claim is None and state.heartbeat_at is None and state.runs == 1
