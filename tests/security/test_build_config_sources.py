"""Attacks on build configs (POST /api/v1/studies/ `build_config`): reading the server's filesystem, probing
it for paths, and asking for unbounded work. Each test performs the attack and asserts it now fails with a
clear 400 that names the field (and the cap), creating nothing and reading no file."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from PIL import Image
from rest_framework.test import APIClient

from studies.models import Study

pytestmark = pytest.mark.django_db


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def create(user, build_config, kind="2afc"):
    return client_for(user).post(
        "/api/v1/studies/", {"name": "attack", "kind": kind, "build_config": build_config}, format="json"
    )


@pytest.fixture
def no_filesystem_sources(monkeypatch):
    """Any attempt to construct the engine's folder or files source (a scan or a read) fails the test."""
    from distortions import sources

    def refuse(*args, **kwargs):
        raise AssertionError("the platform touched a filesystem source")

    monkeypatch.setattr(sources.FolderSource, "__init__", refuse)
    monkeypatch.setattr(sources.FilesSource, "__init__", refuse)
    monkeypatch.setattr(sources.FilesSource, "_load", refuse)


def photo_zip(*sizes, seed=0) -> io.BytesIO:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for n, (w, h) in enumerate(sizes):
            png = io.BytesIO()
            Image.fromarray((np.random.default_rng(seed + n).random((h, w, 3)) * 255).astype("uint8")).save(
                png, format="PNG"
            )
            zf.writestr(f"photos/{n}.png", png.getvalue())
    buffer.seek(0)
    buffer.name = "photos.zip"
    return buffer


def upload(user, *sizes, seed=0) -> str:
    r = client_for(user).post(
        "/api/v1/sources/", {"archive": photo_zip(*sizes, seed=seed), "name": "mine"}, format="multipart"
    )
    assert r.status_code == 201, r.content
    return r.json()["id"]


def test_a_folder_source_of_the_root_is_refused_without_a_scan(researcher_carol, no_filesystem_sources):
    r = create(researcher_carol, {"n_items": 4, "source": {"type": "folder", "path": "/"}})
    assert r.status_code == 400 and r.json()["extra"]["field"] == "build_config.source"
    assert "skimage" in r.json()["message"] and "upload" in r.json()["message"]
    assert not Study.objects.exists()


def test_a_files_source_of_etc_shadow_is_refused(researcher_carol, no_filesystem_sources):
    r = create(researcher_carol, {"n_items": 4, "source": {"type": "files", "paths": ["/etc/shadow"]}})
    assert r.status_code == 400 and "/etc" not in r.content.decode() and "shadow" not in r.content.decode()
    assert not Study.objects.exists()


def test_the_existence_oracle_is_closed(researcher_carol, no_filesystem_sources):
    """Paths that exist and paths that do not (and any other source type) get byte-identical answers."""
    answers = {
        (r.status_code, r.content)
        for r in (
            create(researcher_carol, {"source": {"type": "folder", "path": "/etc"}}),
            create(researcher_carol, {"source": {"type": "folder", "path": "/no/such/folder"}}),
            create(researcher_carol, {"source": {"type": "files", "paths": ["/etc/hostname"]}}),
            create(researcher_carol, {"source": {"type": "files", "paths": ["/no/such/file.png"]}}),
            create(researcher_carol, {"source": {"type": "url", "url": "http://169.254.169.254/"}}),
            create(researcher_carol, {"source": {"type": "skimage", "path": "/etc"}}),
        )
    }
    assert len(answers) == 1 and answers.pop()[0] == 400


@pytest.mark.parametrize(
    "build_config,field",
    [
        ({"n_items": 10_000_000}, "build_config.n_items"),
        ({"n_items": 1e7}, "build_config.n_items"),
        ({"n_items": True}, "build_config.n_items"),
        ({"patch_size": 1024}, "build_config.patch_size"),
        ({"sentinels": {"n": 10**12}}, "build_config.sentinels.n"),
        ({"sentinels": {"n": 1e12}}, "build_config.sentinels.n"),
        ({"practice": {"n": 10**6}}, "build_config.practice.n"),
        ({"composition": {"max_ops": 100}}, "build_config.composition.max_ops"),
        ({"distortions": ["gaussian_blur"] * 10_000}, "build_config.distortions"),
        ({"source": {"type": "skimage", "names": ["moon"] * 10_000}}, "build_config.source.names"),
        ({"seed": 10**30}, "build_config.seed"),
        ({"sentinels": {"light_severity": 1e9}}, "build_config.sentinels.light_severity"),
        ({"flat_threshold": "x"}, "build_config.flat_threshold"),
        ({"severity_range": [0, 1, 2]}, "build_config.severity_range"),
        ({"families": {"blur": 1e300}}, "build_config.families"),
        ({"sentinels": {"n": 1, "surprise": 1}}, "build_config.sentinels"),
    ],
)
def test_huge_counts_and_sizes_are_refused(researcher_carol, build_config, field, settings):
    r = create(researcher_carol, build_config)
    assert r.status_code == 400 and r.json()["extra"]["field"] == field, r.json()
    assert field in r.json()["message"]
    if "cap" in r.json()["extra"]:
        assert str(r.json()["extra"]["cap"]) in r.json()["message"]
    assert not Study.objects.exists()


def test_the_cnn_share_is_capped(researcher_carol, settings):
    from distortions.cnn import distortion  # noqa: F401  (registers the CNN family)

    settings.PERCEPTLAB_BUILD_LIMITS = {**settings.PERCEPTLAB_BUILD_LIMITS, "cnn_items": 100}
    r = create(researcher_carol, {"n_items": 1000, "families": {"blur": 1, "cnn": 1}})
    assert r.status_code == 400 and r.json()["extra"] == {"field": "build_config.families", "cap": 100}
    assert "CNN" in r.json()["message"] and "100" in r.json()["message"]
    assert create(researcher_carol, {"n_items": 150, "families": {"blur": 1, "cnn": 1}}).status_code == 201


def test_the_caps_come_from_settings(researcher_carol, settings):
    settings.PERCEPTLAB_BUILD_LIMITS = {**settings.PERCEPTLAB_BUILD_LIMITS, "n_items": 50}
    r = create(researcher_carol, {"n_items": 51})
    assert r.status_code == 400 and "0..50" in r.json()["message"] and r.json()["extra"]["cap"] == 50
    assert create(researcher_carol, {"n_items": 50}).status_code == 201


def test_another_researchers_source_set_id_is_refused_like_a_missing_one(researcher_carol, researcher_dave):
    carols = upload(researcher_carol, (64, 64))
    answers = {
        (r.status_code, r.content)
        for r in (
            create(researcher_dave, {"source": {"type": "upload", "id": carols}}),
            create(
                researcher_dave, {"source": {"type": "upload", "id": "00000000-0000-4000-8000-000000000000"}}
            ),
            create(researcher_dave, {"source": {"type": "upload", "id": "not-a-uuid"}}),
            create(researcher_dave, {"source": {"type": "upload", "id": 7}}),
        )
    }
    assert len(answers) == 1
    status, body = answers.pop()
    assert status == 400 and b"no such source photo set" in body
    assert not Study.objects.exists()


def test_the_patch_size_must_fit_the_source_sets_photos(researcher_carol):
    set_id = upload(researcher_carol, (80, 70), (200, 120))
    r = create(researcher_carol, {"patch_size": 96, "source": {"type": "upload", "id": set_id}})
    assert r.status_code == 400 and r.json()["extra"] == {"field": "build_config.patch_size", "cap": 70}


def test_a_study_builds_from_the_researchers_own_photos(researcher_carol, settings):
    from studies.services import study_build_stimuli

    set_id = upload(researcher_carol, (96, 80), (128, 128), seed=5)
    r = create(
        researcher_carol,
        {
            "n_items": 3,
            "patch_size": 64,
            "seed": 2,
            "sentinels": {"n": 1},
            "practice": {"n": 0},
            "source": {"type": "upload", "id": set_id},
        },
    )
    assert r.status_code == 201, r.content
    assert r.json()["build_config"]["source"] == {"type": "upload", "id": set_id}  # no server path anywhere
    study = Study.objects.get(pk=r.json()["id"])
    assert study_build_stimuli(study=study, jobs=1) == 4
    study.refresh_from_db()
    assert study.status == Study.Status.ACTIVE
    sources = {item.records["patch"]["source"] for item in study.items.all()}
    stored = {f"file:{p.name}" for p in (settings.MEDIA_ROOT / "sources" / set_id).iterdir()}
    assert sources and sources <= stored
    assert str(settings.MEDIA_ROOT) not in str(
        client_for(researcher_carol).get(f"/api/v1/studies/{study.pk}/").json()
    )


def test_a_stored_folder_source_is_refused_at_build_time(
    researcher_carol, no_filesystem_sources, captured_tasks
):
    """A study row from before these rules (or written around the API) cannot make the worker read files."""
    from core.exceptions import ApplicationError
    from studies.services import study_build_stimuli

    study = Study.objects.create(
        name="old",
        kind="2afc",
        owner=researcher_carol,
        build_config={"kind": "2afc", "n_items": 2, "source": {"type": "folder", "path": "/"}},
    )
    with pytest.raises(ApplicationError, match="build_config.source"):
        study_build_stimuli(study=study, jobs=1)
    study.refresh_from_db()
    assert study.status == Study.Status.FAILED and "build_config.source" in study.build_error
    assert not study.items.exists()


def test_the_cli_still_reads_folders(tmp_path):
    """The engine (python -m distortions build-study) is not the platform: it may still read a folder."""
    from distortions import StudyConfig
    from distortions.sources import source_from_dict

    Image.fromarray(np.zeros((64, 64, 3), "uint8")).save(tmp_path / "a.png")
    assert len(source_from_dict({"type": "folder", "path": str(tmp_path)}).images) == 1
    StudyConfig.from_dict({"kind": "2afc", "source": {"type": "folder", "path": str(tmp_path)}})
