"""Media on an S3-compatible object store (core.storage, PERCEPTLAB_STORAGE=s3), end to end: moto's S3
server on a loopback port (started here; no network), real Postgres, Redis and a Celery worker. The web
process (this one) and the worker each have their own empty MEDIA_ROOT and local cache, so nothing can pass
between them but the database and the bucket: the worker builds a study, a crowd answers it, the worker
trains it (k-means trunk, feature cache) and exports it, and the web serves a trial image, the export and
the model from the bucket. Then the worker loses its whole local cache and retrains from the bucket."""

import hashlib
import io
import random
import shutil
import socket
import sys
import zipfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from worker_process import celery_worker, child_env, wait_for  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.slow]
BUCKET = "perceptlab-media"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def s3_endpoint():
    """moto's S3 server in a thread of this process, on a free loopback port."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def _s3_env(endpoint: str) -> dict:
    return {
        "PERCEPTLAB_STORAGE": "s3",
        "PERCEPTLAB_TEST_STORAGE": "s3",  # config.settings.test ignores PERCEPTLAB_STORAGE
        "AWS_STORAGE_BUCKET_NAME": BUCKET,
        "AWS_S3_ENDPOINT_URL": endpoint,
        "AWS_S3_REGION_NAME": "us-east-1",
        "AWS_S3_ADDRESSING_STYLE": "path",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }


def _files(root: Path) -> list[str]:
    return (
        sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
        if root.exists()
        else []
    )


def _body(response) -> bytes:
    return b"".join(response.streaming_content)


@pytest.mark.django_db(transaction=True)
def test_web_and_worker_share_nothing_but_the_database_and_the_bucket(
    settings, redis_url, postgres, researcher_carol, tmp_path, monkeypatch, s3_endpoint, crowd
):
    import boto3
    from django.db import transaction
    from rest_framework.test import APIClient

    from core.tasks import enqueue_on_commit
    from exports.models import Export
    from studies.models import Item, Study
    from studies.services import study_create
    from studies.tasks import study_build_stimuli
    from training.models import ModelVersion
    from training.services import training_request

    env = _s3_env(s3_endpoint)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    bucket = boto3.resource(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).Bucket(BUCKET)
    bucket.create()

    def keys() -> set[str]:
        return {obj.key for obj in bucket.objects.all()}

    web, worker = tmp_path / "web", tmp_path / "worker"
    settings.MEDIA_ROOT = web / "media"
    settings.PERCEPTLAB_STORAGE_CACHE_DIR = web / "cache"
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "core.storage_s3.S3MediaStorage",
            "OPTIONS": {
                "bucket_name": BUCKET,
                "endpoint_url": s3_endpoint,
                "region_name": "us-east-1",
                "addressing_style": "path",
            },
        },
    }
    worker_env = {
        **child_env(settings, redis_url),
        **env,
        "MEDIA_ROOT": str(worker / "media"),
        "PERCEPTLAB_DATA_DIR": str(worker / "data"),
        "PERCEPTLAB_KMEANS_PATCHES": "64",
    }
    log = tmp_path / "worker.log"

    def worker_log() -> str:
        return log.read_text()[-4000:] if log.exists() else ""

    with celery_worker(worker_env, log_path=log):
        # built by the worker: every stimulus lands in the bucket, none on the web's disk
        with transaction.atomic():
            study = study_create(
                name="s3",
                kind="2afc",
                build_config={"n_items": 24, "seed": 7, "splits": {"train": 0.5, "val": 0.5}},
                owner=researcher_carol,
                config={
                    "hit_size": 12,
                    "judgments_per_item": {"train": 2, "val": 2},
                    "training": {
                        "every": None,
                        "backbones": [{"net": "alex", "weights": "kmeans"}],
                        "baselines": ["l2_lab"],
                        "official_lpips": False,
                        "n_boot": 20,
                        "epochs": 1,
                        "epochs_decay": 0,
                        "min_steps": 0,
                    },
                },
            )
            enqueue_on_commit(study_build_stimuli, str(study.pk))
        try:
            wait_for(lambda: Study.objects.get(pk=study.pk).status == Study.Status.ACTIVE, timeout=180)
        except TimeoutError:
            pytest.fail("the worker did not build the study:\n" + worker_log())
        study.refresh_from_db()
        images = {
            name
            for row in Item.objects.filter(study=study).values("ref_image", "p0_image", "p1_image")
            for name in row.values()
        }
        assert images and images <= keys()
        assert _files(web) == [] and _files(worker / "media") == []

        # a trial image, streamed from the bucket under its opaque per-trial URL (no redirect, no name)
        client = APIClient()
        started = client.post(
            f"/api/v1/studies/{study.pk}/assignments/",
            {"platform": "anonymous", "consent": True},
            format="json",
        ).json()
        url = started["trials"][0]["images"]["ref"]
        served = client.get(url)
        assert served.status_code == 200 and served["Content-Type"] == "image/png"
        assert not any(h in served for h in ("Location", "Content-Disposition", "ETag", "Last-Modified"))
        png = _body(served)
        assert int(served["Content-Length"]) == len(png)
        assert f"stimuli/{hashlib.sha256(png).hexdigest()}.png" in images
        assert client.post(f"/api/v1/assignments/{started['token']}/return/").status_code == 200

        # answered, then trained by the worker: features, trunk and model go to the bucket
        rng = random.Random(0)
        crowd(study, 8, lambda trial, item: item.expected or rng.choice(["p0", "p1"]))
        training_request(study=study, force=True)
        try:
            wait_for(lambda: ModelVersion.objects.filter(study=study, status="ready").exists(), timeout=300)
        except TimeoutError:
            pytest.fail("the worker did not train the study:\n" + worker_log())
        first = ModelVersion.objects.get(study=study, status="ready")
        stored = keys()
        assert {first.heads_path, first.trunk_path} <= stored
        features = {k for k in stored if k.startswith(f"features/{study.pk}/")}
        assert any(k.endswith(".npy") for k in features) and any(k.endswith(".pth") for k in features)
        assert first.train_info["computed_features"] > 0

        # a worker with an empty disk (another machine) retrains from the bucket alone: nothing recomputed
        shutil.rmtree(worker / "data" / "cache")
        training_request(study=study, force=True)
        try:
            wait_for(
                lambda: ModelVersion.objects.filter(study=study, status="ready").count() == 2, timeout=300
            )
        except TimeoutError:
            pytest.fail("the worker did not retrain the study:\n" + worker_log())
        second = ModelVersion.objects.filter(study=study, status="ready").latest("version")
        assert second.train_info["computed_features"] == 0 and second.backbone_info["trunk_cached"] is True
        assert second.trunk_sha256 == first.trunk_sha256

        # exported by the worker into the bucket, downloaded through the web
        researcher = APIClient()
        researcher.force_authenticate(researcher_carol)
        created = researcher.post(f"/api/v1/studies/{study.pk}/exports/", {}, format="json")
        assert created.status_code == 202, created.content
        try:
            wait_for(
                lambda: Export.objects.get(pk=created.json()["id"]).status == Export.Status.DONE, timeout=180
            )
        except TimeoutError:
            pytest.fail("the worker did not export the study:\n" + worker_log())
    export = Export.objects.get(pk=created.json()["id"])
    assert export.archive in keys()
    download = researcher.get(f"/api/v1/exports/{export.pk}/download/")
    assert download.status_code == 200 and "Location" not in download
    archive = _body(download)
    assert hashlib.sha256(archive).hexdigest() == export.sha256 and len(archive) == export.size_bytes
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        assert zf.testzip() is None
        members = zf.namelist()
    assert "export.json" in members and sum(m.endswith(".png") for m in members) >= len(images) // 2

    model = researcher.get(f"/api/v1/models/{second.pk}/download/")
    assert model.status_code == 200
    with zipfile.ZipFile(io.BytesIO(_body(model))) as zf:
        assert zf.testzip() is None and any(m.endswith("/trunk.pth") for m in zf.namelist())

    # the web process never held a stimulus or an export on its disk; the worker's MEDIA_ROOT stayed empty
    assert not [f for f in _files(web) if f.endswith((".png", ".zip", ".npz"))]
    assert _files(worker / "media") == []
    # a missing object is a 410 for the researcher, not a 500
    bucket.Object(export.archive).delete()
    assert researcher.get(f"/api/v1/exports/{export.pk}/download/").status_code == 410
