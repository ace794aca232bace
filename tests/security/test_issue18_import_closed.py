"""Issue 18 attack review: a closed study is closed "for good" (study_close: no new assignments, no restart),
yet the zip import (POST /api/v1/studies/<id>/import/, the import page's upload) still accepts an archive
into it and queues the job: items are added to a study nobody can ever judge again, and they change what
its exports and evaluations contain. Only a building study is refused today."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from PIL import Image
from rest_framework.test import APIClient

from studies.lifecycle import study_close
from studies.services import study_create

pytestmark = pytest.mark.django_db


def _png(seed: int) -> bytes:
    pixels = (np.random.default_rng(seed).random((16, 16, 3)) * 255).astype("uint8")
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _archive() -> io.BytesIO:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for i in range(4):
            for k, part in enumerate(("ref", "p0", "p1")):
                zf.writestr(f"{part}/{i:03d}.png", _png(10 * i + k))
    buffer.seek(0)
    buffer.name = "upload.zip"
    return buffer


def test_it_refuses_an_import_into_a_closed_study(researcher_carol, captured_tasks):
    study = study_create(name="closed", kind="2afc", build_config={}, owner=researcher_carol)
    study_close(study=study)
    client = APIClient()
    client.force_authenticate(researcher_carol)
    response = client.post(f"/api/v1/studies/{study.pk}/import/", {"archive": _archive()}, format="multipart")
    assert response.status_code == 409, (response.status_code, response.content[:300])
    assert captured_tasks == []
