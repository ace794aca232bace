"""Review of the storage layer (core.storage, core.storage_s3): attacks and races, each written as a test
that fails while the weakness is there. The S3 backend is moto's in-process mock (no network); faults the
mock cannot produce (a 503 from the store, a concurrent writer) are injected with botocore's own event
hooks on the storage's client, so the code under test runs unchanged."""

import errno
import hashlib
import os

import pytest
from botocore.exceptions import ClientError
from rest_framework.test import APIClient

from core import storage
from tests.apps.core.conftest import S3_BUCKET as BUCKET


def _storage_events():
    """The event hooks of the client the media storage itself uses (not the test's own client)."""
    return storage.media().connection.meta.client.meta.events


def _store_answers(status: int, code: str, operation: str):
    """Make the store answer `operation` with an error, as botocore raises it after its retries."""

    def fail(**_kwargs):
        raise ClientError(
            {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}},
            operation,
        )

    _storage_events().register(f"before-call.s3.{operation}", fail)


# --- a store error is a clear 503, never an unhandled 500 ---------------------------------------------------
@pytest.mark.django_db
@pytest.mark.parametrize(
    ("status", "code"), [(503, "SlowDown"), (500, "InternalError"), (403, "AccessDenied")]
)
def test_an_object_store_error_on_the_annotator_image_api_is_a_503(s3, settings, make_study, status, code):
    """judgments/apis.py stimulus_response catches OSError only: a ClientError from GetObject (the store
    throttling, failing, or a key/policy change) escapes as an unhandled 500 with a traceback."""
    study = make_study(n_test=1, n_sentinels=0, n_practice=1)  # written to MEDIA_ROOT by the fixture
    item = study.items.get(role="practice")
    for name in (item.ref_image, item.p0_image, item.p1_image):
        storage.save_bytes(name, (settings.MEDIA_ROOT / name).read_bytes())
    client = APIClient(raise_request_exception=False)
    assert client.get(f"/api/v1/studies/{study.pk}/examples/0/ref/").status_code == 200  # served from S3
    _store_answers(status, code, "GetObject")
    response = client.get(f"/api/v1/studies/{study.pk}/examples/0/ref/")
    assert response.status_code == 503, response.status_code  # the store is down: retry later


@pytest.mark.django_db
def test_an_object_store_error_on_export_download_is_a_503_not_a_500(s3, researcher_carol, make_study):
    """exports/apis.py ExportDownloadApi maps FileNotFoundError to 410 and nothing else: a throttled or
    failing store gives an unhandled 500."""
    from exports.models import Export

    study = make_study(owner=researcher_carol, n_test=1, n_sentinels=0, n_practice=0)
    storage.save_bytes(f"exports/{study.pk}/s-v1.zip", b"PK archive")
    export = Export.objects.create(
        study=study, version=1, status=Export.Status.DONE, archive=f"exports/{study.pk}/s-v1.zip"
    )
    client = APIClient(raise_request_exception=False)
    client.force_authenticate(researcher_carol)
    assert client.get(f"/api/v1/exports/{export.pk}/download/").status_code == 200
    _store_answers(503, "SlowDown", "GetObject")
    assert client.get(f"/api/v1/exports/{export.pk}/download/").status_code == 503


# --- a local copy is stamped with the version it holds, never with another writer's -------------------------
def test_a_local_copy_is_never_stamped_with_a_concurrent_writers_fingerprint(s3):
    """core/storage.py store_local(keep_local=True) uploads, then HEADs the object to stamp its local copy.
    Another worker's upload of the same name between the PUT and the HEAD (two training jobs writing one
    feature cache) stamps OUR bytes with THEIR fingerprint: local_copy then trusts the stale copy until the
    object changes again, and never reads what the bucket holds."""
    name = "features/s/alex-d.npz"
    ours, theirs = b"worker A's table", b"worker B's table, written at the same time"
    raced = []

    def other_worker_uploads(**kwargs):
        if not raced:
            raced.append(True)
            s3.put_object(Bucket=BUCKET, Key=name, Body=theirs)  # another machine, another client

    _storage_events().register("after-call.s3.PutObject", other_worker_uploads)
    with storage.writing(name, keep_local=True) as tmp:
        tmp.write_bytes(ours)
    assert raced and storage.read_bytes(name) == theirs  # the bucket holds B's table
    assert storage.local_copy(name).read_bytes() == theirs  # ...and a read must see it


# --- content-addressed saves work where hard links do not ---------------------------------------------
def test_a_content_addressed_save_works_on_a_file_system_without_hard_links(settings, monkeypatch):
    """core/storage.py save_if_absent (local): when os.link fails with anything but FileExistsError (a shared
    file system without hard links: CIFS/SMB, many FUSE mounts; docs/deployment-storage.md asks for "a
    shared file system") it falls back to save_file(name, content), which opens `content` as a path: with
    bytes (restore's images) that is open(b'\\x89PNG...') -> ValueError, and the restore fails."""
    data = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR fake png"
    name = f"stimuli/{hashlib.sha256(data).hexdigest()}.png"

    def no_hard_links(src, dst):
        raise OSError(errno.EPERM, "Operation not permitted", str(dst))

    monkeypatch.setattr(os, "link", no_hard_links)
    assert storage.save_if_absent(name, data) is True
    assert storage.read_bytes(name) == data
    assert storage.save_if_absent(name, data) is False
    leftovers = [p.name for p in settings.MEDIA_ROOT.rglob(".*") if p.is_file()]
    assert leftovers == []


# --- a deleted photo set leaves no copy of a researcher's photos on any machine -----------------------------
@pytest.mark.django_db
def test_a_deleted_source_set_leaves_no_photo_copies_in_another_machines_cache(s3, settings, tmp_path):
    """studies/sources.py _engine_source keeps `local_copy(..., immutable=True)` of every photo of a set,
    for every create, preview (web) and build (worker), and nothing removes them: source_set_delete
    (core.storage.delete) clears only the deleting machine's cache. A researcher's deleted private photos
    stay on every other web and worker disk indefinitely."""
    import io
    import zipfile

    import numpy as np
    from django.contrib.auth import get_user_model
    from PIL import Image

    from studies.preview import study_preview
    from studies.sources import source_set_create, source_set_delete

    owner = get_user_model().objects.create_user(username="erin", password="erin-pass-123")
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        for i in range(2):
            photo = io.BytesIO()
            Image.fromarray((np.random.default_rng(i).random((64, 80, 3)) * 255).astype("uint8")).save(
                photo, format="PNG"
            )
            zf.writestr(f"private-{i}.png", photo.getvalue())
    archive.seek(0)
    web_a, web_b = tmp_path / "web-a-cache", tmp_path / "web-b-cache"
    settings.PERCEPTLAB_STORAGE_CACHE_DIR = web_a
    photo_set = source_set_create(owner=owner, name="private", archive=archive)
    study_preview(
        kind="2afc", build_config={"source": {"type": "upload", "id": str(photo_set.pk)}}, owner=owner, n=1
    )
    settings.PERCEPTLAB_STORAGE_CACHE_DIR = web_b  # the delete request lands on another web machine
    source_set_delete(photo_set=photo_set)
    assert not storage.listdir(f"sources/{photo_set.pk}")  # gone from the bucket
    left = [p.name for p in web_a.rglob("*") if p.is_file() and "sources" in p.parts]
    assert left == [], f"{len(left)} private photos still on web-a after the set was deleted"


@pytest.mark.django_db
def test_creating_or_previewing_a_study_on_the_web_does_not_download_the_whole_photo_set(s3, settings):
    """studies/sources.py _engine_source copies EVERY photo of a set (up to 200 photos, 256 MiB) into the
    local cache whenever a build config is checked: on the web, inside POST /api/v1/studies/ (whose check
    never opens a photo: the engine's files source loads lazily) and the new-study preview (which reads
    PREVIEW_MAX_PHOTOS). On S3 that is the whole set fetched synchronously in a request (a gunicorn timeout
    on a first create), and a copy of private photos on every web machine. Fix: check names only
    (storage.exists or the row's `files`); copy in the build, and only the photos the preview uses."""
    import io
    import zipfile

    import numpy as np
    from django.contrib.auth import get_user_model
    from PIL import Image

    from studies.preview import PREVIEW_MAX_PHOTOS, study_preview
    from studies.services import study_create
    from studies.sources import source_set_create

    owner = get_user_model().objects.create_user(username="erin", password="erin-pass-123")
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        for i in range(PREVIEW_MAX_PHOTOS + 6):
            photo = io.BytesIO()
            pixels = (np.random.default_rng(i).random((64, 80, 3)) * 255).astype("uint8")
            Image.fromarray(pixels).save(photo, format="PNG")
            zf.writestr(f"p{i}.png", photo.getvalue())
    archive.seek(0)
    photo_set = source_set_create(owner=owner, name="ten photos", archive=archive)
    gets = []
    _storage_events().register("before-parameter-build.s3.GetObject", lambda params, **_: gets.append(1))
    config = {"source": {"type": "upload", "id": str(photo_set.pk)}, "n_items": 10}
    study_create(name="from my photos", kind="2afc", build_config=config, owner=owner)
    assert len(gets) == 0, f"creating the study fetched {len(gets)} photos to check a config"
    study_preview(kind="2afc", build_config=config, owner=owner, n=1)
    assert len(gets) <= PREVIEW_MAX_PHOTOS, f"the preview fetched {len(gets)} photos"


# --- one name check for every backend ----------------------------------------------------------------------
CLIMBING = [
    "stimuli/../exports/s/v1.zip",  # from a served folder into a private one
    "stimuli/./../exports/s/v1.zip",
    "stimuli\\..\\exports\\s\\v1.zip",  # S3 (django-storages clean_name) turns backslashes into slashes
    "/exports/s/v1.zip",  # absolute: S3 strips the slash and reads the key
]


@pytest.mark.parametrize("name", CLIMBING)
@pytest.mark.parametrize("backend", ["local", "s3"])
def test_no_storage_name_climbs_between_folders_on_any_backend(name, backend, request):
    """core/storage.py passes names to the backend unchecked (only _cache_path validates): `..` inside the
    root is allowed on both backends, and on S3 a backslash path or an absolute name reads a private export
    (the local backend refuses or misses them: a difference no test covers). Every caller regex-checks
    today; one check here (validate_file_name, plus no "\\", NUL, "." or ".." parts, nothing absolute)
    keeps the next caller from handing a row's or an archive's name straight through."""
    from django.core.exceptions import SuspiciousFileOperation

    if backend == "s3":
        request.getfixturevalue("s3")
    storage.save_bytes("exports/s/v1.zip", b"PRIVATE export")
    for call in (storage.read_bytes, storage.open_stream, storage.exists):
        with pytest.raises(SuspiciousFileOperation):
            call(name)


def test_two_processes_refreshing_one_local_copy_never_leave_a_stale_copy_stamped_current(s3, monkeypatch):
    """core/storage.py local_copy: the copy (os.replace) and its stamp (a separate .stamp file) are written
    in two steps without a lock. Two readers sharing the cache (a worker's two processes), one holding the
    old object and one the new: B replaces the copy with the new bytes, A replaces it with the old ones and
    stamps it, B stamps it with the NEW fingerprint -> the old bytes are trusted as current until the object
    changes again. Fix: one atomic step (the fingerprint in the copy's file name, or the stamp written
    into a temporary folder renamed with the copy), or an flock per name around the refresh."""
    import threading

    name = "features/s/alex-d.npz"
    old, new = b"table before the other worker's save", b"table after the other worker's save!!"
    storage.save_bytes(name, old)
    b_replaced, a_done, raced = threading.Event(), threading.Event(), []
    real_replace = os.replace

    def replace(src, dst):
        real_replace(src, dst)
        if threading.current_thread().name == "reader-B":
            b_replaced.set()  # B's copy is in place; its stamp is not written yet
            a_done.wait(10)

    def rewritten_after_a_read_it(**_kwargs):  # A has the old object's bytes in hand
        if raced:
            return
        raced.append(True)
        s3.put_object(Bucket=BUCKET, Key=name, Body=new)  # another machine saves
        reader_b.start()
        b_replaced.wait(10)

    monkeypatch.setattr(storage.os, "replace", replace)
    reader_b = threading.Thread(target=storage.local_copy, args=(name,), name="reader-B")
    _storage_events().register("after-call.s3.GetObject", rewritten_after_a_read_it)
    storage.local_copy(name)  # reader A
    a_done.set()
    reader_b.join(10)
    assert storage.read_bytes(name) == new
    assert storage.local_copy(name).read_bytes() == new  # a stale copy must never pass as current


@pytest.mark.django_db
def test_a_retrain_reads_the_val_images_from_its_local_copies_not_the_bucket(s3, settings, make_study):
    """docs/deployment-storage.md: "content-addressed ... names (stimuli, ...) are fetched once". But
    training/features.py media_patch reads every stimulus with storage.read_bytes, one GET each time: every
    retrain's baselines (services._evaluate_on_images -> dataset_from_items) download all val images
    again, 3 sequential GETs per item (minutes per retrain for a few thousand items on a remote store).
    Fix: media_patch through storage.local_copy(name, immutable=True), as the docs say."""
    from training.services import dataset_from_items, study_items

    study = make_study(n_test=4, n_sentinels=0, n_practice=0, val_fraction=1.0)
    for item in study.items.all():
        for name in (item.ref_image, item.p0_image, item.p1_image):
            storage.save_bytes(name, (settings.MEDIA_ROOT / name).read_bytes())
    items = study_items(study, "val", {pk: (1, 2) for pk in study.items.values_list("id", flat=True)})
    assert len(items) == 4
    gets = []
    _storage_events().register(
        "before-parameter-build.s3.GetObject", lambda params, **_: gets.append(params["Key"])
    )
    dataset_from_items(study, items)  # the first run fetches each image
    first = len(gets)
    dataset_from_items(study, items)  # a retrain: the same content-addressed images
    assert first == 12 and len(gets) == first, f"the retrain fetched {len(gets) - first} images again"
