"""Researcher API: studies, lifecycle, imports, stats, personas (carol owns, dave is another researcher)."""

import io
import zipfile

import numpy as np
import pytest
from PIL import Image
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from studies.models import Item, Study

pytestmark = pytest.mark.django_db


def client_for(user):
    client = APIClient()
    if user is not None:
        token, _ = Token.objects.get_or_create(user=user)
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


def png_bytes(seed, size=(64, 64), fmt="PNG"):
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray((rng.random((size[1], size[0], 3)) * 255).astype("uint8")).save(buffer, format=fmt)
    return buffer.getvalue()


def zip_of(files: dict) -> io.BytesIO:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    buffer.seek(0)
    buffer.name = "upload.zip"
    return buffer


def triplets(n, prefix="", seed=0):
    return {
        f"{prefix}{part}/{i:03d}.png": png_bytes(seed + 10 * i + k)
        for i in range(n)
        for k, part in enumerate(("ref", "p0", "p1"))
    }


def test_create_a_study_from_an_engine_config_queues_the_build_and_shows_it_building(
    researcher_carol, captured_tasks, django_capture_on_commit_callbacks
):
    config = {"seed": 1, "n_items": 4, "source": {"type": "skimage"}}
    with django_capture_on_commit_callbacks(execute=True):
        r = client_for(researcher_carol).post(
            "/api/v1/studies/",
            {"name": "mine", "kind": "2afc", "build_config": config, "config": {"hit_size": 10}},
            format="json",
        )
    assert r.status_code == 201, r.content
    body = r.json()
    assert (
        body["status"] == "building"
        and body["config"]["hit_size"] == 10
        and body["config"]["completion_code"]
    )
    assert captured_tasks == [("studies.study_build_stimuli", (body["id"],), {})]


@pytest.mark.parametrize(
    "payload,word",
    [
        ({"name": "x", "kind": "3afc"}, "kind"),
        ({"name": "x", "kind": "2afc", "build_config": {"n_items": -1}}, "build_config"),
        ({"name": "x", "kind": "2afc", "config": {"hit_size": 0}}, "hit_size"),
        (
            {"name": "x", "kind": "2afc", "config": {"judgments_per_item": {"val": "five"}}},
            "judgments_per_item",
        ),
        ({"name": "x", "kind": "2afc", "config": {"surprise": 1}}, "surprise"),
        *[
            ({"name": "x", "kind": "2afc", "build_config": bc}, "build_config")
            for bc in (
                {"n_items": "x"},
                {"seed": [1]},
                {"source": 5},
                {"families": {"blur": "a"}},
                {"splits": {"train": "x"}},
                {"composition": 3},
                {"sentinels": "no"},
                {"category": 7},
            )
        ],
    ],
)
def test_bad_study_configs_get_a_400_naming_the_problem(researcher_carol, payload, word):
    r = client_for(researcher_carol).post("/api/v1/studies/", payload, format="json")
    assert r.status_code == 400 and word in str(r.json()), r.json()
    assert not Study.objects.exists()


def test_researchers_see_only_their_own_studies(researcher_carol, researcher_dave, make_study):
    mine = make_study(owner=researcher_carol, name="carol's")
    carol, dave, anon = client_for(researcher_carol), client_for(researcher_dave), client_for(None)
    assert [s["name"] for s in carol.get("/api/v1/studies/").json()] == ["carol's"]
    assert dave.get("/api/v1/studies/").json() == []
    for path in ("", "workers/", "exports/"):
        assert carol.get(f"/api/v1/studies/{mine.pk}/{path}").status_code == 200
        assert dave.get(f"/api/v1/studies/{mine.pk}/{path}").status_code == 404
        assert anon.get(f"/api/v1/studies/{mine.pk}/{path}").status_code in (401, 403)
    for action in ("pause/", "start/", "exports/"):
        assert dave.post(f"/api/v1/studies/{mine.pk}/{action}").status_code == 404
    assert dave.patch(f"/api/v1/studies/{mine.pk}/", {"name": "stolen"}, format="json").status_code == 404
    assert Study.objects.get(pk=mine.pk).name == "carol's"


def test_start_pause_and_stats(researcher_carol, make_study, answer_trials, truthful):
    from judgments.assignments import assignment_start

    study = make_study(owner=researcher_carol, n_test=6, n_sentinels=2, n_practice=1, active=False)
    carol = client_for(researcher_carol)
    assert carol.post(f"/api/v1/studies/{study.pk}/start/").json()["status"] == "active"
    study.refresh_from_db()
    a = assignment_start(study=study, platform="anonymous", worker_id="w").assignment
    answer_trials(a, truthful)
    stats = carol.get(f"/api/v1/studies/{study.pk}/").json()["stats"]
    assert stats["items"] == {"test": 6, "sentinel": 2, "practice": 1}
    assert stats["test_judgments"] == 6 and stats["accepted_judgments"] == 6 and stats["workers"] == 1
    assert (
        stats["coverage"]["val"]["target_per_item"] == 5
        and stats["coverage"]["train"]["target_per_item"] == 2
    )
    assert stats["sentinel_accuracy"] == 1.0
    workers = carol.get(f"/api/v1/studies/{study.pk}/workers/").json()
    assert (
        workers["count"] == 1
        and workers["results"][0]["judgments"] == 7
        and workers["results"][0]["sentinel_accuracy"] == 1.0
        and len(workers["results"][0]["worker"]) == 16
    )
    assert carol.post(f"/api/v1/studies/{study.pk}/pause/").json()["status"] == "paused"
    assert (
        carol.patch(f"/api/v1/studies/{study.pk}/", {"config": {"hit_size": 3}}, format="json").json()[
            "config"
        ]["hit_size"]
        == 3
    )


def test_an_empty_study_cannot_start(researcher_carol, make_study):
    study = make_study(owner=researcher_carol, n_test=0, n_sentinels=0, n_practice=0, active=False)
    r = client_for(researcher_carol).post(f"/api/v1/studies/{study.pk}/start/")
    assert r.status_code == 409 and "no test items" in r.json()["message"]


def run_imports(captured_tasks) -> list[dict]:
    """Run the import jobs the API queued (as a worker would), in order; returns their results."""
    from studies.tasks import study_import_items

    done = [
        study_import_items(*args) for name, args, _ in captured_tasks if name == "studies.study_import_items"
    ]
    captured_tasks.clear()
    return done


def import_zip(client, study_id, upload, captured_tasks, django_capture_on_commit_callbacks, **fields):
    """POST an import (202 with what to poll), run the queued job, return the study's build_progress."""
    with django_capture_on_commit_callbacks(execute=True):
        r = client.post(
            f"/api/v1/studies/{study_id}/import/", {"archive": upload, **fields}, format="multipart"
        )
    assert r.status_code == 202, r.content
    assert r.json()["state"] == "queued" and r.json()["poll"] == f"/api/v1/studies/{study_id}/"
    run_imports(captured_tasks)
    return client.get(r.json()["poll"]).json()["build_progress"]


def test_import_real_algorithm_outputs_from_a_zip(
    researcher_carol, captured_tasks, django_capture_on_commit_callbacks, settings
):
    carol = client_for(researcher_carol)
    study_id = carol.post("/api/v1/studies/", {"name": "imported", "kind": "2afc"}, format="json").json()[
        "id"
    ]
    upload = zip_of({**triplets(3), **triplets(2, prefix="train/superres/", seed=100)})
    progress = import_zip(
        carol, study_id, upload, captured_tasks, django_capture_on_commit_callbacks, category="deblur"
    )
    assert progress["state"] == "done" and progress["done"] == progress["total"] == 5
    assert (progress["imported"], progress["skipped_duplicates"]) == (5, 0)
    cats = sorted(Item.objects.filter(study_id=study_id).values_list("split", "category"))
    assert cats == [("train", "superres")] * 2 + [("val", "deblur")] * 3
    again = import_zip(
        carol, study_id, zip_of(triplets(3)), captured_tasks, django_capture_on_commit_callbacks
    )
    assert (again["imported"], again["skipped_duplicates"]) == (
        0,
        3,
    )  # label-studio #541: no duplicate imports
    assert carol.post(f"/api/v1/studies/{study_id}/start/").json()["status"] == "active"
    # the uploads were kept privately until their jobs ran, then removed
    assert not list((settings.MEDIA_ROOT / "imports").rglob("*.zip"))


def _bomb_png(side: int) -> bytes:
    """A small PNG whose header claims side x side pixels (what a decompression bomb looks like to a
    reader)."""
    import struct
    import zlib

    data = bytearray(png_bytes(0, size=(8, 8)))
    ihdr = struct.pack(">II", side, side) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)


@pytest.mark.parametrize(
    "files,word",
    [
        ({"ref/a.png": png_bytes(1), "p0/a.png": png_bytes(2)}, "needs"),
        (
            {"ref/a.png": png_bytes(1), "p0/a.png": png_bytes(2), "p1/a.png": b"not an image"},
            "not a readable image",
        ),
        ({"ref/a.png": png_bytes(1), "p0/a.png": png_bytes(2), "p1/a.png": png_bytes(3)[:200]}, "p1/a.png"),
        ({"ref/a.png": png_bytes(1), "p0/a.png": png_bytes(2), "p1/a.png": png_bytes(3, fmt="GIF")}, "GIF"),
        (
            {"ref/a.png": png_bytes(1), "p0/a.png": png_bytes(2), "p1/a.png": png_bytes(3, size=(32, 32))},
            "differ in size",
        ),
        (
            {"ref/a.png": png_bytes(1), "p0/a.png": png_bytes(2), "p1/a.png": png_bytes(3, size=(2000, 10))},
            "outside",
        ),
        ({"notes.txt": b"hello"}, "unexpected file"),
        ({"../ref/a.png": png_bytes(1)}, "unexpected file"),
    ],
)
def test_bad_imports_are_refused_whole_with_a_reason(
    researcher_carol, files, word, captured_tasks, django_capture_on_commit_callbacks
):
    """Refused at once (from the zip's directory and the image headers), or by the job for damage only
    decoding finds (a truncated PNG): either way nothing is imported and the reason names the file."""
    carol = client_for(researcher_carol)
    study_id = carol.post("/api/v1/studies/", {"name": "imported", "kind": "2afc"}, format="json").json()[
        "id"
    ]
    with django_capture_on_commit_callbacks(execute=True):
        r = carol.post(f"/api/v1/studies/{study_id}/import/", {"archive": zip_of(files)}, format="multipart")
    if r.status_code == 202:
        run_imports(captured_tasks)
        progress = carol.get(f"/api/v1/studies/{study_id}/").json()["build_progress"]
        assert progress["state"] == "failed" and word in progress["error"], progress
    else:
        assert r.status_code == 400 and word in r.json()["message"], r.json()
    assert not Item.objects.exists()


def test_decompression_bombs_and_non_zips_are_refused(researcher_carol):
    carol = client_for(researcher_carol)
    study_id = carol.post("/api/v1/studies/", {"name": "imported", "kind": "2afc"}, format="json").json()[
        "id"
    ]
    for side, word in ((100_000, "decompression bomb"), (5000, "outside")):
        r = carol.post(
            f"/api/v1/studies/{study_id}/import/",
            {
                "archive": zip_of(
                    {"ref/a.png": _bomb_png(side), "p0/a.png": png_bytes(1), "p1/a.png": png_bytes(2)}
                )
            },
            format="multipart",
        )
        assert r.status_code == 400 and word in r.json()["message"], r.json()
    not_zip = io.BytesIO(b"plain text")
    not_zip.name = "x.zip"
    r = carol.post(f"/api/v1/studies/{study_id}/import/", {"archive": not_zip}, format="multipart")
    assert r.status_code == 400 and "zip" in r.json()["message"]
    # a zip bomb: one highly compressible member
    r = carol.post(
        f"/api/v1/studies/{study_id}/import/",
        {"archive": zip_of({"ref/a.png": b"\0" * 9_000_000})},
        format="multipart",
    )
    assert r.status_code == 400 and "too large or too compressed" in r.json()["message"]


def test_the_openapi_schema_lists_every_endpoint(api_client):
    r = api_client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert r.status_code == 200
    paths = r.json()["paths"]
    for path in (
        "/api/v1/studies/",
        "/api/v1/studies/{study_id}/import/",
        "/api/v1/studies/{study_id}/exports/",
        "/api/v1/exports/{export_id}/download/",
        "/api/v1/studies/{study_id}/assignments/",
        "/api/v1/assignments/{token}/judgments/",
        "/api/v1/assignments/{token}/submit/",
    ):
        assert path in paths, path
