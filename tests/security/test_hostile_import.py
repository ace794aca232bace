"""Attacks on the zip import (`POST /api/v1/studies/<id>/import/`): bombs that are small in the zip and huge
decoded, floods of members, oversize uploads, and archives that fail late. Each test performs one attack
and asserts it now fails: refused at once from the zip's directory and the image headers (nothing decoded,
nothing stored, nothing queued), or, for damage only decoding can find, failed by the job with nothing
imported. The import job holds one triplet's images at a time (counted on the decode function)."""

from __future__ import annotations

import io
import weakref
import zipfile
from pathlib import Path

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image
from rest_framework.test import APIClient

from core.exceptions import ApplicationError
from studies import imports
from studies.imports import study_import_start
from studies.models import Item, Study
from studies.tasks import study_import_items

pytestmark = pytest.mark.django_db


def png(seed: int | None, side: int = 16) -> bytes:
    """A noisy PNG (seed) or a flat one (None): a flat 1024x1024 PNG is ~3 KB and 3 MB decoded."""
    pixels = (
        np.zeros((side, side, 3), "uint8")
        if seed is None
        else (np.random.default_rng(seed).random((side, side, 3)) * 255).astype("uint8")
    )
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def zip_of(files: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> io.BytesIO:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    buffer.seek(0)
    buffer.name = "upload.zip"
    return buffer


def triplets(n: int, side: int = 16, seed: int = 0) -> dict[str, bytes]:
    return {
        f"{part}/{i:03d}.png": png(seed + 10 * i + k, side)
        for i in range(n)
        for k, part in enumerate(("ref", "p0", "p1"))
    }


@pytest.fixture
def carol(researcher_carol):
    client = APIClient()
    client.force_authenticate(researcher_carol)
    return client


@pytest.fixture
def study(researcher_carol):
    from studies.services import study_create

    return study_create(name="imports", kind="2afc", build_config={}, owner=researcher_carol)


@pytest.fixture
def decodes(monkeypatch):
    """Counts calls of the import's decode function and how many decoded images are alive at once."""
    real = imports.decode_image
    stats = {"calls": 0, "alive": 0, "max_alive": 0}

    def gone():
        stats["alive"] -= 1

    def spy(*args, **kwargs):
        image = real(*args, **kwargs)
        stats["calls"] += 1
        stats["alive"] += 1
        stats["max_alive"] = max(stats["max_alive"], stats["alive"])
        weakref.finalize(image, gone)
        return image

    monkeypatch.setattr(imports, "decode_image", spy)
    return stats


def refused_at_once(carol, study, upload, captured_tasks, settings, status=400):
    r = carol.post(f"/api/v1/studies/{study.pk}/import/", {"archive": upload}, format="multipart")
    assert r.status_code == status, r.content
    body = r.json()
    assert set(body) == {"message", "extra"}
    assert captured_tasks == [] and not Item.objects.filter(study=study).exists()
    assert not list(Path(settings.MEDIA_ROOT).rglob("*.zip")), "a refused upload is not kept"
    return body


def limits(settings, **changes):
    settings.PERCEPTLAB_LIMITS = {**settings.PERCEPTLAB_LIMITS, **changes}


def test_a_flood_of_flat_big_pngs_is_refused_from_the_headers(
    carol, study, captured_tasks, settings, decodes
):
    flat = png(None, 1024)
    assert len(flat) < 10_000  # tiny in the zip, 3 MB each decoded
    limits(settings, import_max_total_pixels=4 * 1024 * 1024)
    files = {f"{part}/{i:03d}.png": flat for i in range(3) for part in ("ref", "p0", "p1")}
    body = refused_at_once(carol, study, zip_of(files), captured_tasks, settings)
    assert (
        "pixels in all" in body["message"] and body["extra"]["file"] == "p0/001.png"
    )  # the 5th image (ref, p0, p1 of 000; ref, p0 of 001) crosses it
    assert decodes["calls"] == 0  # decided from the headers alone


def test_an_image_whose_header_claims_too_many_pixels_is_refused_undecoded(
    carol, study, captured_tasks, settings, decodes
):
    limits(settings, import_max_side=512)
    files = {**triplets(1), "p1/000.png": png(None, 1024)}
    body = refused_at_once(carol, study, zip_of(files), captured_tasks, settings)
    assert "outside 8..512" in body["message"] and body["extra"]["file"] == "p1/000.png"
    assert decodes["calls"] == 0


def test_many_members_are_refused(carol, study, captured_tasks, settings):
    limits(settings, import_max_files=30)
    body = refused_at_once(carol, study, zip_of(triplets(11)), captured_tasks, settings)
    assert "too many files (33 > 30)" in body["message"]


def test_a_member_with_a_huge_compression_ratio_is_refused(carol, study, captured_tasks, settings):
    files = {**triplets(1), "ref/000.png": b"\x89PNG" + b"\0" * 2_000_000}  # 2 MB of zeros, ~2 KB in the zip
    body = refused_at_once(carol, study, zip_of(files), captured_tasks, settings)
    assert "too compressed" in body["message"] and body["extra"]["file"] == "ref/000.png"


def test_a_member_whose_total_unpacked_size_is_too_big_is_refused(carol, study, captured_tasks, settings):
    limits(settings, import_max_total_bytes=10_000)
    body = refused_at_once(carol, study, zip_of(triplets(10), zipfile.ZIP_STORED), captured_tasks, settings)
    assert "unpacks to" in body["message"]


def test_an_oversize_upload_is_refused_with_413_before_it_is_read(carol, study, captured_tasks, settings):
    settings.PERCEPTLAB_MAX_UPLOAD_BYTES = 20_000
    upload = zip_of(triplets(10), zipfile.ZIP_STORED)
    assert len(upload.getvalue()) > 20_000
    body = refused_at_once(carol, study, upload, captured_tasks, settings, status=413)
    assert "limit is 20000" in body["message"]


def test_an_oversize_file_without_a_content_length_is_refused_by_the_service(study, settings):
    settings.PERCEPTLAB_MAX_UPLOAD_BYTES = 20_000
    upload = SimpleUploadedFile("upload.zip", zip_of(triplets(10), zipfile.ZIP_STORED).getvalue())
    with pytest.raises(ApplicationError, match="limit is 20000") as err:
        study_import_start(study=study, archive=upload)
    assert err.value.status_code == 413


def test_an_import_holds_one_triplet_decoded_at_a_time(
    carol, study, captured_tasks, settings, decodes, django_capture_on_commit_callbacks
):
    n = 8
    with django_capture_on_commit_callbacks(execute=True):
        r = carol.post(
            f"/api/v1/studies/{study.pk}/import/",
            {"archive": zip_of(triplets(n, side=64))},
            format="multipart",
        )
    assert (
        r.status_code == 202 and r.json()["total"] == n and decodes["calls"] == 0
    )  # the API decodes nothing
    ((name, args, _),) = captured_tasks
    assert name == "studies.study_import_items"
    result = study_import_items(*args)
    assert result["state"] == "done" and result["imported"] == n
    assert decodes["calls"] == 3 * n and decodes["max_alive"] <= 3  # never more than one triplet
    assert Item.objects.filter(study=study).count() == n


def test_a_bad_image_late_in_the_archive_leaves_no_rows_and_no_files(
    carol, study, captured_tasks, settings, django_capture_on_commit_callbacks
):
    files = triplets(6)
    good = files["p1/005.png"]
    files["p1/005.png"] = good[: len(good) - 40]  # the header is fine: only decoding finds the damage
    with django_capture_on_commit_callbacks(execute=True):
        r = carol.post(f"/api/v1/studies/{study.pk}/import/", {"archive": zip_of(files)}, format="multipart")
    assert r.status_code == 202, r.content
    ((_, args, _),) = captured_tasks
    result = study_import_items(*args)
    assert (
        result["state"] == "failed"
        and result["file"] == "p1/005.png"
        and "not a readable image" in result["error"]
    )
    progress = Study.objects.get(pk=study.pk).build_progress
    assert progress["state"] == "failed" and progress["file"] == "p1/005.png"
    media = Path(settings.MEDIA_ROOT)
    assert not Item.objects.filter(study=study).exists()
    assert not (media / "stimuli").exists() or not list(
        (media / "stimuli").iterdir()
    )  # the first 5 were staged only
    assert not [p for p in (media / "imports").rglob("*") if p.is_file()]  # upload and staging removed


def test_the_stored_upload_is_private(
    carol, study, captured_tasks, settings, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        assert (
            carol.post(
                f"/api/v1/studies/{study.pk}/import/", {"archive": zip_of(triplets(1))}, format="multipart"
            ).status_code
            == 202
        )
    ((_, args, _),) = captured_tasks
    stored = args[1]
    assert stored.startswith("imports/") and (Path(settings.MEDIA_ROOT) / stored).is_file()
    assert APIClient().get(f"/media/{stored}").status_code == 404
    assert carol.get(f"/media/{stored}").status_code == 404


def test_a_second_import_while_one_is_queued_is_refused(
    carol, study, captured_tasks, settings, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        assert (
            carol.post(
                f"/api/v1/studies/{study.pk}/import/", {"archive": zip_of(triplets(1))}, format="multipart"
            ).status_code
            == 202
        )
        r = carol.post(
            f"/api/v1/studies/{study.pk}/import/",
            {"archive": zip_of(triplets(1, seed=50))},
            format="multipart",
        )
    assert r.status_code == 409 and "still running" in r.json()["message"]
    assert len(captured_tasks) == 1 and len(list((Path(settings.MEDIA_ROOT) / "imports").rglob("*.zip"))) == 1


def test_a_job_naming_a_file_outside_the_uploads_does_nothing(study, settings):
    secret = Path(settings.MEDIA_ROOT) / "exports" / "x.zip"
    secret.parent.mkdir(parents=True)
    secret.write_bytes(zip_of(triplets(1)).getvalue())
    for rel in ("exports/x.zip", "../exports/x.zip", f"imports/{study.pk}/../../exports/x.zip"):
        assert study_import_items(str(study.pk), rel, "val", "imported")["status"] == "gone"
    assert secret.is_file() and not Item.objects.filter(study=study).exists()
