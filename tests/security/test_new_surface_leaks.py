"""Attacks on this session's new pages and model metadata: what an anonymous visitor reads on the public home
page, what a researcher's model card (made to be shared) says about the server, and whether study, metric
and category names reach the dashboard's inline SVG charts and Models panel unescaped."""

import hashlib
import io
import uuid
import zipfile

import pytest
import torch
from rest_framework.test import APIClient

import metric
from metric.backbones import backbone_spec, imagenet_weights_file
from studies.models import BackgroundJob
from training.models import Evaluation, ModelVersion

pytestmark = pytest.mark.django_db

SECRET_HOME = "home/svc-perceptlab-secret"


def test_the_public_home_page_does_not_show_a_failed_jobs_raw_exception(client):
    """demo_cnn_pool_run stores str(exc)[:2000] and _cnn_pool.html prints it to anyone."""
    BackgroundJob.objects.create(
        name="cnn_pool",
        state=BackgroundJob.State.FAILED,
        total=16,
        message=f"[Errno 28] No space left on device: '/{SECRET_HOME}/cnn_pool/model_003/snapshot_400.pt'",
    )
    page = client.get("/").content.decode()
    assert "CNN distortion pool" in page  # the box is there
    assert SECRET_HOME not in page


@pytest.fixture
def auto_model(make_study, researcher_carol, settings, tmp_path, monkeypatch):
    """A ready model of carol's study trained with weights "auto" where the ImageNet file is present: the
    path the platform records is the server's torch cache under its service account's home."""
    from training.services import StudyBackbone

    hub = tmp_path / SECRET_HOME / ".cache/torch/hub"
    monkeypatch.setattr(torch.hub, "_hub_dir", str(hub))
    path, _ = imagenet_weights_file(backbone_spec("alex"))
    path.parent.mkdir(parents=True)
    path.write_bytes(b"present")  # resolve_weights only checks that it exists
    study = make_study(owner=researcher_carol, n_test=4, n_sentinels=0, n_practice=0)
    backbone = StudyBackbone(study, {"net": "alex", "weights": "auto"})
    assert backbone.used == "imagenet"
    heads = settings.MEDIA_ROOT / f"models/{study.pk}/alex-imagenet-lin-v1.pth"
    metric.LPIPS(net="alex", backbone_weights="random", head_weights="random").save_heads(heads)
    return ModelVersion.objects.create(
        study=study,
        backbone="alex",
        weights="imagenet",
        version=1,
        status="ready",
        heads_path=str(heads.relative_to(settings.MEDIA_ROOT)),
        heads_sha256=hashlib.sha256(heads.read_bytes()).hexdigest(),
        backbone_info=dict(backbone.info),
    )


def test_a_model_card_does_not_reveal_the_servers_file_system(auto_model, researcher_carol, client):
    """resolve_weights' reason ("auto: the ImageNet weights file /home/.../alexnet-owt-....pth is present")
    is stored as backbone_info["reason"] and shown on the API, the dashboard and in the shareable card."""
    api = APIClient()
    api.force_authenticate(researcher_carol)
    detail = api.get(f"/api/v1/models/{auto_model.pk}/")
    assert detail.status_code == 200
    assert SECRET_HOME not in detail.content.decode()
    r = api.get(f"/api/v1/models/{auto_model.pk}/download/")
    assert r.status_code == 200
    with zipfile.ZipFile(io.BytesIO(b"".join(r.streaming_content))) as zf:
        card = {n.split("/")[-1]: zf.read(n).decode() for n in zf.namelist() if not n.endswith(".pth")}
    assert SECRET_HOME not in card["model_card.json"]
    assert SECRET_HOME not in card["MODEL_CARD.md"]
    client.force_login(researcher_carol)
    assert SECRET_HOME not in client.get(f"/dashboard/{auto_model.study_id}/").content.decode()


XSS = '"><img src=x onerror=alert(1)><script>alert(2)</script>'


def test_names_reach_the_dashboard_charts_and_models_panel_escaped(
    make_study, researcher_carol, client, settings
):
    """Study, metric and category names are researcher- or archive-controlled; the charts are inserted with
    |safe. (This passes: charts.py escapes every label; kept as a regression check.)"""
    study = make_study(owner=researcher_carol, name=XSS[:200], n_test=4, n_sentinels=0, n_practice=0)
    run = uuid.uuid4()
    version = ModelVersion.objects.create(
        study=study,
        backbone="alex",
        weights="random",
        version=1,
        status="ready",
        backbone_info={"requested": XSS, "used": XSS, "reason": XSS, "corpus": {"digest": XSS}},
    )
    for n, (measure, category) in enumerate([("2afc", "all"), ("2afc", XSS[:64]), ("ceiling", XSS[:64])]):
        Evaluation.objects.create(
            study=study,
            model_version=version if n < 2 else None,
            run=run,
            metric=XSS[:64],
            kind="trained" if n < 2 else "human",
            measure=measure,
            split="val",
            category=category,
            score=0.7,
            ci_low=0.6,
            ci_high=0.8,
            n_items=4,
            n_judgments=10,
        )
    client.force_login(researcher_carol)
    for url in ("/dashboard/", f"/dashboard/{study.pk}/"):
        page = client.get(url)
        assert page.status_code == 200, url
        body = page.content.decode()
        assert "<img src=x" not in body and "<script>alert" not in body, url
