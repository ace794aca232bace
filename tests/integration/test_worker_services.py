"""Real Postgres, real Redis, a real Celery worker process."""

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from worker_process import celery_worker, child_env, wait_for  # noqa: E402

pytestmark = [pytest.mark.integration]


@pytest.mark.django_db(transaction=True)
def test_smoke_task_round_trips_through_redis_and_a_worker(settings, redis_url, postgres, tmp_path):
    from core.tasks import ping

    with celery_worker(child_env(settings, redis_url), log_path=tmp_path / "worker.log"):
        result = ping.apply_async(kwargs={"payload": {"via": "redis"}}).get(timeout=90)
    assert result["echo"] == {"via": "redis"}
    assert result["system"] == os.uname().sysname
    assert result["pid"] != os.getpid()


@pytest.mark.django_db(transaction=True)
def test_worker_builds_a_study_in_postgres_after_commit(
    settings, redis_url, postgres, researcher_carol, tmp_path
):
    from django.db import connection, transaction

    from core.tasks import enqueue_on_commit
    from studies.models import Item, Study
    from studies.services import study_create
    from studies.tasks import study_build_stimuli

    assert connection.vendor == "postgresql"
    with celery_worker(child_env(settings, redis_url), log_path=tmp_path / "worker.log"):
        with transaction.atomic():
            study = study_create(
                name="pg", kind="2afc", build_config={"n_items": 12, "seed": 4}, owner=researcher_carol
            )
            enqueue_on_commit(study_build_stimuli, str(study.pk))
        try:
            wait_for(lambda: Study.objects.get(pk=study.pk).status == Study.Status.ACTIVE, timeout=120)
        except TimeoutError:
            pytest.fail("worker did not build the study:\n" + (tmp_path / "worker.log").read_text()[-4000:])
    assert Item.objects.filter(study=study).count() == 12 + 15 + 4
    item = Item.objects.filter(study=study, role="test").first()
    assert (Path(settings.MEDIA_ROOT) / item.p0_image).is_file()


@pytest.mark.django_db(transaction=True)
def test_worker_trains_a_cnn_pool_on_the_gpu_queue(settings, redis_url, postgres, tmp_path):
    from studies.tasks import autoencoder_pool_train

    env = {**child_env(settings, redis_url), "PERCEPTLAB_CNN_POOL_DIR": str(tmp_path / "pool")}
    budget = {"steps": 4, "batch_size": 2, "snapshots": [2, 4], "checkpoint_every": 2}
    with celery_worker(env, queues="gpu", log_path=tmp_path / "worker.log"):
        result = autoencoder_pool_train.apply_async(kwargs={"n_models": 2, "budget": budget}).get(timeout=240)
    assert result["models"] == 2 and result["device"] in ("cpu", "cuda")
    pool = __import__("json").loads((tmp_path / "pool" / "pool.json").read_text())
    assert [s["step"] for s in pool["models"][1]["snapshots"]] == [2, 4]
