"""Attacks on the model endpoints (list, detail with card, download): only the study's owner and superusers
read a model; other researchers get 404 (ids are not confirmed), the anonymous 401/403; only a ready
version downloads; a damaged file or a bad query is a 4xx with a message, never a 500."""

import hashlib
import io
import zipfile

import pytest
import torch
from rest_framework.test import APIClient

import metric
from training.models import ModelVersion

pytestmark = pytest.mark.django_db


def client_for(user=None) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


@pytest.fixture
def model(make_study, researcher_carol, settings):
    """A ready random-trunk model of carol's study, with its heads and trunk files in media storage."""
    study = make_study(owner=researcher_carol, n_test=4, n_sentinels=0, n_practice=0, name="carol's study")
    lpips = metric.LPIPS(net="alex", backbone_weights="random", head_weights="random")
    heads = settings.MEDIA_ROOT / f"models/{study.pk}/alex-random-lin-v1.pth"
    lpips.save_heads(heads)
    trunk = settings.MEDIA_ROOT / f"models/{study.pk}/trunk-alex.pth"
    torch.save(lpips.backbone.features.state_dict(), trunk)
    return ModelVersion.objects.create(
        study=study,
        backbone="alex",
        weights="random",
        version=1,
        status="ready",
        heads_path=str(heads.relative_to(settings.MEDIA_ROOT)),
        heads_sha256=hashlib.sha256(heads.read_bytes()).hexdigest(),
        trunk_path=str(trunk.relative_to(settings.MEDIA_ROOT)),
        trunk_sha256=hashlib.sha256(trunk.read_bytes()).hexdigest(),
        backbone_info={"requested": "random", "used": "random", "reason": "the control"},
    )


def _urls(model):
    return [
        f"/api/v1/studies/{model.study_id}/models/",
        f"/api/v1/models/{model.pk}/",
        f"/api/v1/models/{model.pk}/download/",
        f"/api/v1/models/{model.pk}/download/?part=heads",
    ]


def test_another_researcher_gets_404_and_learns_nothing(model, researcher_dave):
    for url in _urls(model):
        r = client_for(researcher_dave).get(url)
        assert r.status_code == 404, url
        assert "carol" not in r.content.decode(errors="replace")


def test_the_anonymous_are_refused(model):
    for url in _urls(model):
        assert client_for().get(url).status_code in (401, 403), url


def test_the_owner_and_a_superuser_download(model, researcher_carol, django_user_model):
    admin = django_user_model.objects.create_superuser(username="root", password="root-pass-123")
    for user in (researcher_carol, admin):
        r = client_for(user).get(f"/api/v1/models/{model.pk}/download/")
        assert r.status_code == 200 and r["Content-Type"] == "application/zip"
        names = zipfile.ZipFile(io.BytesIO(b"".join(r.streaming_content))).namelist()
        assert {n.split("/")[-1] for n in names} == {
            "heads.pth",
            "trunk.pth",
            "model_card.json",
            "MODEL_CARD.md",
        }


@pytest.mark.parametrize("status", ["running", "failed"])
def test_only_ready_versions_download(model, researcher_carol, status):
    ModelVersion.objects.filter(pk=model.pk).update(status=status)
    for url in _urls(model)[2:]:
        r = client_for(researcher_carol).get(url)
        assert r.status_code == 409 and f"is {status}" in r.json()["message"]
    assert client_for(researcher_carol).get(f"/api/v1/models/{model.pk}/").json()["card"] is None


def test_a_damaged_or_missing_file_is_a_410_not_a_500(model, researcher_carol, settings):
    heads = settings.MEDIA_ROOT / model.heads_path
    heads.write_bytes(heads.read_bytes() + b"tampered")
    r = client_for(researcher_carol).get(f"/api/v1/models/{model.pk}/download/")
    assert r.status_code == 410 and "sha256" in r.json()["message"]
    heads.unlink()
    r = client_for(researcher_carol).get(f"/api/v1/models/{model.pk}/download/?part=heads")
    assert r.status_code == 410 and "missing" in r.json()["message"]


def test_a_model_without_its_trunk_is_refused_with_a_reason(model, researcher_carol):
    ModelVersion.objects.filter(pk=model.pk).update(trunk_path="", trunk_sha256="")
    r = client_for(researcher_carol).get(f"/api/v1/models/{model.pk}/download/")
    assert r.status_code == 409 and "retrain" in r.json()["message"]


@pytest.mark.parametrize(
    "part, status, kind",
    [
        ("../../settings.py", 400, None),
        ("trunk", 400, None),
        ("heads%00", 400, None),
        ("", 200, "application/zip"),  # empty: the default, the bundle
        ("heads&part=bundle", 200, "application/zip"),  # a repeated parameter: the last counts
    ],
)
def test_the_part_parameter_names_a_part_or_is_a_400(model, researcher_carol, part, status, kind):
    r = client_for(researcher_carol).get(f"/api/v1/models/{model.pk}/download/?part={part}")
    assert r.status_code == status and (kind is None or r["Content-Type"] == kind)


def test_unknown_or_malformed_ids_are_404(researcher_carol):
    for url in ("/api/v1/models/00000000-0000-0000-0000-000000000000/", "/api/v1/models/x/download/"):
        assert client_for(researcher_carol).get(url).status_code == 404
