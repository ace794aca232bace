"""The wedged training claim, with a real kill: a Celery worker is SIGKILLed in the middle of a retrain, a
fresh worker starts, the broker delivers the unacknowledged job again (acks_late, a short Redis visibility
timeout), the job takes over the claim once its heartbeat has gone stale, and the study trains to
completion; a forced retrain works again afterwards. Before the fix the redelivered job found the old
claim, marked the study queued and exited, and nothing ever cleared it."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from worker_process import celery_worker, child_env, wait_for  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.slow]


@pytest.mark.django_db(transaction=True)
def test_a_retrain_killed_mid_job_is_taken_over_by_a_fresh_worker(
    settings, redis_url, postgres, tmp_path, make_study, crowd
):
    from training.models import Evaluation, ModelVersion, TrainingState
    from training.triggers import training_request

    rng = np.random.default_rng(0)
    study = make_study(
        n_test=40,
        n_sentinels=0,
        n_practice=0,
        config={
            "hit_size": 40,
            "training": {
                "every": None,
                "backbones": [{"net": "alex", "weights": "random"}],
                "baselines": ["l2_lab"],
                "official_lpips": False,
                "n_boot": 50,
                "min_steps": 2_000,
            },
        },
    )
    crowd(study, 3, lambda t, i: ("p0", "p1")[int(rng.random() < 0.4)], prefix="w")
    env = {
        **child_env(settings, redis_url),
        "PERCEPTLAB_TRAINING_HEARTBEAT_S": "0.2",
        "PERCEPTLAB_TRAINING_STALE_S": "3",
        "CELERY_VISIBILITY_TIMEOUT": "20",
        "PERCEPTLAB_MIN_RETRAIN_INTERVAL_S": "0",
    }

    def state():
        return TrainingState.objects.get(study=study)

    first = contextlib.ExitStack()
    try:
        worker = first.enter_context(celery_worker(env, log_path=tmp_path / "celery-1.log"))
        assert training_request(study=study, force=True) is True
        # the job is running: it has claimed the study (SIGKILL it at once, in the middle of the job)
        try:
            wait_for(lambda: state().running_since is not None, timeout=180, interval=0.05)
        except TimeoutError:
            pytest.fail("the retrain never started:\n" + (tmp_path / "celery-1.log").read_text()[-4000:])
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
    finally:
        first.close()
    killed = state()
    assert killed.running_since is not None and killed.runs == 0, (
        "the job finished before the kill; make it longer"
    )
    assert not Evaluation.objects.filter(study=study).exists()

    with celery_worker(env, log_path=tmp_path / "celery-2.log"):
        try:
            wait_for(lambda: state().runs >= 1 and state().claim is None, timeout=240)
        except TimeoutError:
            pytest.fail("the study stayed wedged:\n" + (tmp_path / "celery-2.log").read_text()[-4000:])
        recovered = state()
        assert recovered.last_error == "" and not recovered.queued
        assert ModelVersion.objects.filter(study=study, status="ready").exists()
        assert not ModelVersion.objects.filter(
            study=study, status="running"
        ).exists()  # the killed job's: failed
        assert Evaluation.objects.filter(
            study=study, metric="trained alex-random lin", category="all"
        ).exists()
        # and the button works again
        assert training_request(study=study, force=True) is True
        try:
            wait_for(lambda: state().runs >= recovered.runs + 1 and state().claim is None, timeout=240)
        except TimeoutError:
            pytest.fail("the forced retrain never ran:\n" + (tmp_path / "celery-2.log").read_text()[-4000:])
    log = (tmp_path / "celery-2.log").read_text()
    assert f"Task training.study_retrain[{killed_task_id(tmp_path)}] received" in log, (
        "the killed job was not redelivered"
    )
    assert ModelVersion.objects.filter(study=study, status="ready").count() >= 2
    assert not ModelVersion.objects.filter(study=study, status="running").exists()


def killed_task_id(tmp_path) -> str:
    """The id of the task the first worker received (and was killed in)."""
    import re

    match = re.search(
        r"Task training\.study_retrain\[([0-9a-f-]+)\] received", (tmp_path / "celery-1.log").read_text()
    )
    assert match, "the first worker never received the job"
    return match.group(1)
