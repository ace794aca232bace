"""Attacks on source photo sets (POST /api/v1/sources/): hostile archives (zip bombs, pixel bombs, files that
are not photos), other researchers' sets, and the stored photos' privacy. Each refused upload is a clear 4xx
naming the archive (and the member), and leaves no row and no file behind."""

from __future__ import annotations

import hashlib
import io
import struct
import zipfile
import zlib

import numpy as np
import pytest
from PIL import Image
from rest_framework.test import APIClient

from studies.models import SourcePhotoSet, Study

pytestmark = pytest.mark.django_db


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def photo(w=64, h=64, fmt="PNG", seed=0) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray((np.random.default_rng(seed).random((h, w, 3)) * 255).astype("uint8")).save(
        buffer, format=fmt
    )
    return buffer.getvalue()


def archive(files: dict, compression=zipfile.ZIP_STORED) -> io.BytesIO:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    buffer.seek(0)
    buffer.name = "photos.zip"
    return buffer


def post(user, upload, name="photos"):
    return client_for(user).post("/api/v1/sources/", {"archive": upload, "name": name}, format="multipart")


def png_header_only(w: int, h: int) -> bytes:
    """A PNG whose header claims w x h pixels, with almost no data behind it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


@pytest.fixture
def nothing_stored(settings):
    """After the test: no source set row and no stored photo (an all-or-nothing refusal)."""
    yield
    assert not SourcePhotoSet.objects.exists()
    folder = settings.MEDIA_ROOT / "sources"
    assert not folder.exists() or not any(folder.iterdir())


def refused(r, word: str, status: int = 400):
    assert r.status_code == status, (r.status_code, r.content[:300])
    body = r.json()
    assert body["extra"]["field"] == "archive" and word in body["message"], body
    return body


def test_an_upload_stores_the_photos_privately_and_content_addressed(researcher_carol, settings, client):
    a, b = photo(seed=1), photo(80, 64, fmt="JPEG", seed=2)
    r = post(
        researcher_carol, archive({"x/a.png": a, "b.jpg": b, "copy-of-a.png": a, "__MACOSX/._a.png": b"junk"})
    )
    assert r.status_code == 201, r.content
    body = r.json()
    assert (
        body["n_images"] == 2
        and body["min_side"] == 64
        and body["build_source"] == {"type": "upload", "id": body["id"]}
    )
    stored = sorted(p.name for p in (settings.MEDIA_ROOT / "sources" / body["id"]).iterdir())
    assert stored == sorted([hashlib.sha256(a).hexdigest() + ".png", hashlib.sha256(b).hexdigest() + ".jpg"])
    assert {p["sha256"] for p in body["photos"]} == {s.split(".")[0] for s in stored}
    assert str(settings.MEDIA_ROOT) not in r.content.decode()
    # never served, whoever asks
    client.force_login(researcher_carol)
    for path in (f"sources/{body['id']}/{stored[0]}", f"stimuli/../sources/{body['id']}/{stored[0]}"):
        assert client.get(f"/media/{path}").status_code == 404


def test_a_zip_bomb_is_refused_before_it_is_unpacked(researcher_carol, nothing_stored, monkeypatch):
    bomb = archive({"bomb.png": b"\x00" * (20 * 1024 * 1024)}, compression=zipfile.ZIP_DEFLATED)
    assert bomb.getbuffer().nbytes < 100_000
    monkeypatch.setattr(zipfile.ZipFile, "open", lambda *a, **k: pytest.fail("a member was decompressed"))
    refused(post(researcher_carol, bomb), "zip bomb")


def test_a_member_that_lies_about_its_size_is_refused(researcher_carol, nothing_stored):
    """A bomb whose headers claim 1000 bytes: unpacking stops at the claimed size and the CRC fails."""
    data = bytearray(
        archive({"liar.png": b"\x00" * (20 * 1024 * 1024)}, compression=zipfile.ZIP_DEFLATED).getvalue()
    )
    central = data.index(b"PK\x01\x02")
    struct.pack_into("<I", data, 22, 1000)  # local header: uncompressed size
    struct.pack_into("<I", data, central + 24, 1000)  # central directory: uncompressed size
    assert zipfile.ZipFile(io.BytesIO(bytes(data))).getinfo("liar.png").file_size == 1000
    upload = io.BytesIO(bytes(data))
    upload.name = "liar.zip"
    body = refused(post(researcher_carol, upload), "cannot be unpacked")
    assert body["extra"]["file"] == "liar.png"


def test_a_member_bigger_than_the_cap_is_refused(researcher_carol, nothing_stored, settings):
    settings.PERCEPTLAB_SOURCE_LIMITS = {**settings.PERCEPTLAB_SOURCE_LIMITS, "max_file_bytes": 10_000}
    body = refused(post(researcher_carol, archive({"big.png": photo(128, 128)})), "limit 10000")
    assert body["extra"]["file"] == "big.png"


def test_too_many_members_are_refused(researcher_carol, nothing_stored, settings):
    settings.PERCEPTLAB_SOURCE_LIMITS = {**settings.PERCEPTLAB_SOURCE_LIMITS, "max_files": 3}
    refused(post(researcher_carol, archive({f"{n}.png": photo(seed=n) for n in range(4)})), "too many files")


def test_an_archive_over_the_size_cap_is_refused_with_413(researcher_carol, nothing_stored, settings):
    settings.PERCEPTLAB_SOURCE_LIMITS = {**settings.PERCEPTLAB_SOURCE_LIMITS, "max_archive_bytes": 1000}
    refused(post(researcher_carol, archive({"a.png": photo()})), "limit 1000", status=413)


def test_a_pixel_bomb_is_refused_from_its_header_before_decoding(
    researcher_carol, nothing_stored, monkeypatch
):
    monkeypatch.setattr(Image.Image, "load", lambda self: pytest.fail("the pixel bomb was decoded"))
    body = refused(post(researcher_carol, archive({"huge.png": png_header_only(5000, 5000)})), "pixels")
    assert body["extra"]["file"] == "huge.png"
    refused(post(researcher_carol, archive({"huger.png": png_header_only(60000, 60000)})), "pixels")


@pytest.mark.parametrize(
    "name,data,word",
    [
        ("notes.png", b"#!/bin/sh\nrm -rf /\n", "not a readable PNG or JPEG"),
        ("a.gif", photo(fmt="GIF"), "GIF files are not accepted"),
        ("a.bmp", photo(fmt="BMP"), "BMP files are not accepted"),
        ("truncated.png", photo(seed=3)[:-200], "not a readable PNG or JPEG"),
        ("nested.zip", archive({"a.png": photo()}).getvalue(), "not a readable PNG or JPEG"),
        ("small.png", photo(32, 200), "smaller than 64"),
    ],
)
def test_a_file_that_is_not_a_usable_photo_is_refused(researcher_carol, nothing_stored, name, data, word):
    body = refused(post(researcher_carol, archive({"good.png": photo(), name: data})), word)
    assert body["extra"]["file"] == name


def test_not_a_zip_and_an_empty_zip_are_refused(researcher_carol, nothing_stored):
    junk = io.BytesIO(b"definitely not a zip")
    junk.name = "x.zip"
    refused(post(researcher_carol, junk), "not a zip")
    refused(post(researcher_carol, archive({"photos/": b""})), "no photos")


def test_the_total_pixels_of_a_set_are_capped(researcher_carol, nothing_stored, settings):
    settings.PERCEPTLAB_SOURCE_LIMITS = {**settings.PERCEPTLAB_SOURCE_LIMITS, "max_total_pixels": 64 * 64 * 2}
    refused(post(researcher_carol, archive({f"{n}.png": photo(seed=n) for n in range(3)})), "pixels in all")


def test_a_researcher_holds_a_bounded_number_of_sets(researcher_carol, settings):
    settings.PERCEPTLAB_SOURCE_LIMITS = {**settings.PERCEPTLAB_SOURCE_LIMITS, "max_sets_per_owner": 2}
    for n in range(2):
        assert post(researcher_carol, archive({"a.png": photo(seed=n)})).status_code == 201
    assert post(researcher_carol, archive({"a.png": photo(seed=9)})).status_code == 409
    assert SourcePhotoSet.objects.count() == 2


def test_another_researcher_cannot_see_use_or_delete_a_set(researcher_carol, researcher_dave, settings):
    set_id = post(researcher_carol, archive({"a.png": photo()})).json()["id"]
    dave = client_for(researcher_dave)
    assert dave.get("/api/v1/sources/").json() == []
    assert dave.get(f"/api/v1/sources/{set_id}/").status_code == 404
    assert dave.delete(f"/api/v1/sources/{set_id}/").status_code == 404
    assert APIClient().get("/api/v1/sources/").status_code in (401, 403)
    assert APIClient().post(
        "/api/v1/sources/", {"archive": archive({"a.png": photo()})}, format="multipart"
    ).status_code in (401, 403)
    assert (
        SourcePhotoSet.objects.filter(pk=set_id).exists()
        and (settings.MEDIA_ROOT / "sources" / set_id).is_dir()
    )
    assert [s["id"] for s in client_for(researcher_carol).get("/api/v1/sources/").json()] == [set_id]


def test_a_set_in_use_by_an_unbuilt_study_is_not_deleted(researcher_carol, settings):
    carol = client_for(researcher_carol)
    set_id = post(researcher_carol, archive({"a.png": photo()})).json()["id"]
    r = carol.post(
        "/api/v1/studies/",
        {
            "name": "s",
            "kind": "2afc",
            "build_config": {"n_items": 2, "source": {"type": "upload", "id": set_id}},
        },
        format="json",
    )
    assert r.status_code == 201
    assert carol.delete(f"/api/v1/sources/{set_id}/").status_code == 409
    Study.objects.filter(pk=r.json()["id"]).update(status=Study.Status.ACTIVE)  # built
    assert carol.delete(f"/api/v1/sources/{set_id}/").status_code == 204
    assert not SourcePhotoSet.objects.exists() and not (settings.MEDIA_ROOT / "sources" / set_id).exists()
