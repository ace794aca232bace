"""A study's whole life with the media in S3 (moto's in-process mock: no server, no network), in one
process on SQLite: built, answered, trained (k-means trunk, feature cache), retrained after the local
cache is lost, exported and downloaded. Nothing lands in MEDIA_ROOT; every file is an object of the bucket.
tests/integration/test_storage_s3.py runs the same with a real worker process and moto's S3 server."""

import hashlib
import io
import shutil
import zipfile

import numpy as np
import pytest
from rest_framework.test import APIClient

from tests.apps.core.conftest import S3_BUCKET as BUCKET


@pytest.mark.django_db
def test_a_study_lives_in_the_bucket(s3, settings, researcher_carol, crowd, captured_tasks):
    from exports.models import Export
    from exports.services import export_build, export_create
    from studies.services import study_build_stimuli, study_create
    from training.models import ModelVersion
    from training.services import study_retrain

    settings.PERCEPTLAB_KMEANS_PATCHES = 16

    def keys() -> set[str]:
        return {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])}

    study = study_create(
        name="flow",
        kind="2afc",
        build_config={"n_items": 12, "seed": 3, "splits": {"train": 0.5, "val": 0.5}},
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
    study_build_stimuli(study=study, jobs=1)
    study.refresh_from_db()
    images = {n for row in study.items.values("ref_image", "p0_image", "p1_image") for n in row.values()}
    assert images <= keys()

    rng = np.random.default_rng(0)
    crowd(study, 6, lambda t, i: i.expected or ("p0", "p1")[int(rng.random() < 0.4)])
    study_retrain(study=study)
    first = ModelVersion.objects.get(study=study, status="ready")
    assert {first.heads_path, first.trunk_path} <= keys() and first.train_info["computed_features"] > 0
    assert any(k.startswith(f"features/{study.pk}/alex-") and k.endswith(".npy") for k in keys())

    shutil.rmtree(settings.PERCEPTLAB_STORAGE_CACHE_DIR)  # another machine, with an empty disk
    study_retrain(study=study)
    second = ModelVersion.objects.filter(study=study, status="ready").latest("version")
    assert second.train_info["computed_features"] == 0 and second.backbone_info["trunk_cached"] is True

    export = export_build(export=export_create(study=study, user=researcher_carol))
    assert export.status == Export.Status.DONE and export.archive in keys()
    client = APIClient()
    client.force_authenticate(researcher_carol)
    response = client.get(f"/api/v1/exports/{export.pk}/download/")
    archive = b"".join(response.streaming_content)
    assert response.status_code == 200 and hashlib.sha256(archive).hexdigest() == export.sha256
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        assert zf.testzip() is None and "export.json" in zf.namelist()
        restored = {n.removeprefix("restore/media/") for n in zf.namelist() if n.startswith("restore/media/")}
    assert restored == images  # every image copied from the bucket into the archive

    model = client.get(f"/api/v1/models/{second.pk}/download/")
    assert model.status_code == 200
    with zipfile.ZipFile(io.BytesIO(b"".join(model.streaming_content))) as zf:
        assert any(n.endswith("/trunk.pth") for n in zf.namelist())
    assert not settings.MEDIA_ROOT.exists() or not any(settings.MEDIA_ROOT.rglob("*"))
