"""Regression guards for the S3 media storage on paths its own tests do not run (moto's in-process mock, no
network): the zip import with the upload stored by the web process and imported by a worker that shares
nothing with it but the bucket."""

import pytest
from rest_framework.test import APIClient

from core import storage
from tests.apps.core.conftest import S3_BUCKET as BUCKET


# --- regression guards: the S3 paths the storage change's own tests do not run ------------------------------
@pytest.mark.django_db
@pytest.mark.parametrize("damaged", [False, True])
def test_an_import_on_s3_web_and_worker_sharing_only_the_bucket(
    s3, settings, tmp_path, researcher_carol, captured_tasks, django_capture_on_commit_callbacks, damaged
):
    """The zip import with the upload stored by the web and imported by a worker with its own empty cache:
    stimuli land in the bucket (none after a late damaged image), and neither the upload object nor any
    staging or copy is left on either machine."""
    from studies.models import Item
    from studies.services import study_create
    from studies.tasks import study_import_items
    from tests.security.test_hostile_import import triplets, zip_of

    web, worker = tmp_path / "web-cache", tmp_path / "worker-cache"
    settings.PERCEPTLAB_STORAGE_CACHE_DIR = web
    study = study_create(name="imports", kind="2afc", build_config={}, owner=researcher_carol)
    files = triplets(3, side=32)
    if damaged:
        files["p1/002.png"] = files["p1/002.png"][:-40]  # only decoding finds it, in the job
    client = APIClient()
    client.force_authenticate(researcher_carol)
    with django_capture_on_commit_callbacks(execute=True):
        r = client.post(f"/api/v1/studies/{study.pk}/import/", {"archive": zip_of(files)}, format="multipart")
    assert r.status_code == 202, r.content
    ((_, args, _),) = captured_tasks
    assert storage.exists(args[1])  # in the bucket, for the worker to read
    settings.PERCEPTLAB_STORAGE_CACHE_DIR = worker
    result = study_import_items(*args)
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])}
    assert not any(k.startswith("imports/") for k in keys)  # the upload is deleted either way
    if damaged:
        assert result["state"] == "failed" and not Item.objects.filter(study=study).exists()
        assert not any(k.startswith("stimuli/") for k in keys)
    else:
        assert result["state"] == "done" and result["imported"] == 3
        images = {n for row in study.items.values("ref_image", "p0_image", "p1_image") for n in row.values()}
        assert len(images) == 9 and images <= keys
    for cache in (web, worker):
        assert not [p for p in cache.rglob("*") if p.is_file() and "imports" in p.parts]
