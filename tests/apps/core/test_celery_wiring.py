import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from worker_process import celery_worker  # noqa: E402

from config.celery_app import app  # noqa: E402
from core.tasks import enqueue_on_commit, ping  # noqa: E402
from devtools.processes import ROOT  # noqa: E402


def test_serialization_is_json_only_with_time_limits_and_two_queues():
    conf = app.conf
    assert (
        conf.accept_content == ["json"]
        and conf.task_serializer == "json"
        and conf.result_serializer == "json"
    )
    assert {q.name for q in conf.task_queues} == {"default", "gpu"}
    assert conf.task_time_limit and conf.task_soft_time_limit < conf.task_time_limit
    assert conf.task_always_eager is False


def test_tasks_have_explicit_names_and_training_routes_to_gpu():
    assert ping.name == "core.ping"
    router = app.amqp.router
    assert router.route({}, "metric.lpips_train")["queue"].name == "gpu"
    assert router.route({}, "core.ping")["queue"].name == "default"


def test_tasks_are_enqueued_only_on_commit(django_capture_on_commit_callbacks, monkeypatch, db):
    sent = []
    monkeypatch.setattr(ping, "apply_async", lambda args=(), kwargs=None, **kw: sent.append(kwargs))
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        enqueue_on_commit(ping, payload={"n": 1})
        assert sent == []
    assert len(callbacks) == 1
    callbacks[0]()
    assert sent == [{"payload": {"n": 1}}]


def test_smoke_task_round_trips_through_a_worker_on_the_embedded_broker(tmp_path):
    """The embedded default (filesystem broker, file results) with a real worker process."""
    env = {
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "PERCEPTLAB_DATA_DIR": str(tmp_path),
        "DATABASE_URL": "",
        "CELERY_BROKER_URL": "",
        "CELERY_RESULT_BACKEND": "",
    }
    code = (
        "import django, json; django.setup();"
        "from config.celery_app import ensure_broker_folders; ensure_broker_folders();"
        "from core.tasks import ping;"
        "print(json.dumps(ping.delay({'hello': 'worker'}).get(timeout=90)))"
    )
    import subprocess

    with celery_worker(env, log_path=tmp_path / "worker.log"):
        result = subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=150,
            env={**os.environ, "PYTHONPATH": f"{ROOT / 'platform'}:{ROOT}", **env},
        )
    assert result.returncode == 0, result.stderr + (tmp_path / "worker.log").read_text()[-3000:]
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert payload["echo"] == {"hello": "worker"}
    assert payload["system"] == os.uname().sysname  # stdlib platform inside the worker
    assert payload["pid"] != os.getpid()
    # every broker folder lives in the data dir: nothing is written into the checkout
    assert (tmp_path / "broker" / "control").is_dir() and not (ROOT / "control").exists()


@pytest.mark.parametrize("queue", ["default", "gpu"])
def test_queue_names_are_declared(queue):
    assert queue in {q.name for q in app.conf.task_queues}


def test_autoencoder_training_goes_to_the_gpu_queue():
    from studies.tasks import autoencoder_pool_train

    assert autoencoder_pool_train.name == "distortions.autoencoder_pool_train"
    assert app.amqp.router.route({}, autoencoder_pool_train.name)["queue"].name == "gpu"
    assert autoencoder_pool_train.acks_late and autoencoder_pool_train.reject_on_worker_lost
