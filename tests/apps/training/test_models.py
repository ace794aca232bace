"""Trained models people can use: offline the loop trains on a k-means trunk (auto -> kmeans), reuses the
cached trunk and features on the next retrain, records the corpus and ships the trunk; a downloaded
bundle gives the same distances in metric.LPIPS, in the reference lpips package and in the CLI."""

import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import metric.backbones
from metric.backbones import kmeans_corpus
from metric.bundle import load_bundle
from metric.data import load_patch, to_tensor
from metric.lpips import LPIPS
from training import services
from training.models import Evaluation, ModelVersion


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """These tests resolve `auto` backbones: offline, stated here, so none of them tries torchvision's
    download (tests/conftest.py also refuses every connection off the loopback)."""
    monkeypatch.setenv("PERCEPTLAB_OFFLINE", "1")


pytestmark = pytest.mark.django_db
AUTO_ALEX = {
    "every": None,
    "backbones": [{"net": "alex", "weights": "auto"}],
    "baselines": ["l2_lab"],
    "official_lpips": True,
    "n_boot": 50,
    "min_steps": 50,
}


def judged(crowd, study, n):
    rng = np.random.default_rng(0)
    crowd(study, n, lambda t, i: i.expected or ("p0", "p1")[int(rng.random() < 0.4)], prefix="w")


@pytest.fixture
def kmeans_study(crowd, make_study, researcher_carol, settings):
    settings.PERCEPTLAB_KMEANS_PATCHES = 16  # a small corpus keeps the k-means init quick on a CPU
    study = make_study(
        owner=researcher_carol,
        n_test=16,
        n_sentinels=0,
        n_practice=0,
        categories=("traditional", "cnn"),
        config={"hit_size": 16, "training": AUTO_ALEX},
    )
    judged(crowd, study, 5)
    return study


def test_offline_auto_trains_a_kmeans_model_and_a_retrain_reuses_trunk_and_features(
    kmeans_study, settings, monkeypatch
):
    study = kmeans_study
    summary = services.study_retrain(study=study)
    assert summary["models"] == ["alex-kmeans-lin v1"]
    v1 = ModelVersion.objects.get(study=study)
    info = v1.backbone_info
    assert v1.weights == "kmeans" and info["requested"] == "auto" and info["used"] == "kmeans"
    assert "PERCEPTLAB_OFFLINE" in info["reason"] and info["source"].startswith("kmeans:0:")
    n_train = study.items.filter(split="train").count()
    assert info["corpus"] == {
        "seed": 0,
        "patches": 16,
        "digest": info["corpus"]["digest"],
        "split": "train",
        "items": n_train,
        "images": ["ref", "p0", "p1"],
    }
    assert info["source"] == f"kmeans:0:{info['corpus']['digest']}" and info["trunk_cached"] is False
    # the corpus is kmeans_corpus over all the train items' images, read 16 patches at a time
    media = settings.MEDIA_ROOT
    train = study.items.filter(split="train").order_by("index")
    whole = [
        np.stack([load_patch(media / getattr(it, f), 64) for it in train])
        for f in ("ref_image", "p0_image", "p1_image")
    ]
    corpus, _ = services.study_kmeans_corpus(study, seed=0)
    assert torch.equal(corpus, kmeans_corpus(*whole, n=16, seed=0))
    # the trunk is cached next to the feature cache, and shipped with the model
    cached = media / "features" / str(study.pk) / f"alex-seed0-{info['corpus']['digest']}.pth"
    assert cached.is_file()
    trunk = media / v1.trunk_path
    assert hashlib.sha256(trunk.read_bytes()).hexdigest() == v1.trunk_sha256
    # metric names say what ran; no official heads on a k-means trunk
    metrics = set(Evaluation.objects.filter(study=study).values_list("metric", flat=True))
    assert metrics == {
        "human",
        "l2_lab",
        "alex-kmeans unweighted",
        "alex-kmeans untrained (init heads)",
        "trained alex-kmeans lin",
    }

    def no_kmeans(*a, **k):
        raise AssertionError("the cached trunk must be reused")

    monkeypatch.setattr(metric.backbones, "kmeans_init_", no_kmeans)
    services.study_retrain(study=study)
    v2 = ModelVersion.objects.get(study=study, version=2)
    assert v2.backbone_info["trunk_cached"] is True and v2.backbone_info["corpus"] == info["corpus"]
    assert v2.train_info["computed_features"] == 0  # every statistic came from the feature cache
    assert v2.trunk_path == v1.trunk_path and v2.trunk_sha256 == v1.trunk_sha256  # one shared file


def test_random_stays_available_and_ships_its_trunk(crowd, make_study, settings):
    study = make_study(
        n_test=12,
        n_sentinels=0,
        n_practice=0,
        config={
            "hit_size": 12,
            "training": {**AUTO_ALEX, "backbones": [{"net": "alex", "weights": "random"}]},
        },
    )
    judged(crowd, study, 3)
    services.study_retrain(study=study)
    version = ModelVersion.objects.get(study=study)
    assert version.weights == "random" and "control" in version.backbone_info["reason"]
    trunk = settings.MEDIA_ROOT / version.trunk_path
    ours = LPIPS(net="alex", backbone_weights=trunk, head_weights=settings.MEDIA_ROOT / version.heads_path)
    again = LPIPS(
        net="alex", backbone_weights="random", head_weights=settings.MEDIA_ROOT / version.heads_path
    )
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.equal(ours(x[:1], x[1:]), again(x[:1], x[1:]))


def _reference_lpips(heads: Path, trunk: Path):
    """The reference package with our heads (model_path) and the shipped trunk in its slices."""
    lpips = pytest.importorskip("lpips")
    ref = lpips.LPIPS(pretrained=True, net="alex", model_path=str(heads), pnet_rand=True, verbose=False)
    state = torch.load(trunk, map_location="cpu", weights_only=True)
    # pretrained_networks.alexnet keeps torchvision's indices: slice<k>.<index>.weight
    ref.net.load_state_dict({k: state[k.split(".", 1)[1]] for k in ref.net.state_dict()}, strict=True)
    return ref.eval()


def test_a_downloaded_model_gives_the_same_distances_everywhere(
    kmeans_study, researcher_carol, settings, tmp_path, capsys
):
    from rest_framework.test import APIClient

    from metric.cli import main

    services.study_retrain(study=kmeans_study)
    version = ModelVersion.objects.get(study=kmeans_study)
    client = APIClient()
    client.force_authenticate(researcher_carol)
    listed = client.get(f"/api/v1/studies/{kmeans_study.pk}/models/").json()
    assert [m["id"] for m in listed] == [str(version.pk)] and listed[0]["trunk"]["used"] == "kmeans"
    detail = client.get(f"/api/v1/models/{version.pk}/").json()
    card = detail["card"]
    assert card["trunk"]["reason"] == version.backbone_info["reason"] and card["trunk"]["shipped"]
    assert card["evaluation"]["split"] == "val" and card["evaluation"]["measure"] == "2afc"
    own = card["evaluation"]["this_model"]["all"]
    assert own["ci_low"] <= own["score"] <= own["ci_high"]
    assert {"human", "l2_lab", "alex-kmeans unweighted"} <= {
        m["metric"] for m in card["evaluation"]["metrics"]
    }

    r = client.get(f"/api/v1/models/{version.pk}/download/")
    assert r.status_code == 200 and r["Content-Type"] == "application/zip"
    bundle = tmp_path / "model.zip"
    bundle.write_bytes(b"".join(r.streaming_content))
    folder = f"perceptlab-alex-kmeans-lin-v{version.version}"
    with zipfile.ZipFile(bundle) as zf:
        assert sorted(zf.namelist()) == sorted(
            f"{folder}/{n}" for n in ("heads.pth", "trunk.pth", "model_card.json", "MODEL_CARD.md")
        )
        zf.extractall(tmp_path)
        shipped = json.loads(zf.read(f"{folder}/model_card.json"))
        assert "## Held-out evaluation" in zf.read(f"{folder}/MODEL_CARD.md").decode()
    heads, trunk = tmp_path / folder / "heads.pth", tmp_path / folder / "trunk.pth"
    assert shipped["files"]["heads.pth"]["sha256"] == version.heads_sha256
    assert shipped["files"]["trunk.pth"]["sha256"] == version.trunk_sha256
    heads_only = client.get(f"/api/v1/models/{version.pk}/download/?part=heads")
    assert b"".join(heads_only.streaming_content) == heads.read_bytes()

    items = kmeans_study.items.filter(split="val").order_by("index")[:4]
    media = settings.MEDIA_ROOT
    x0 = to_tensor(np.stack([load_patch(media / it.ref_image, 64) for it in items]))
    x1 = to_tensor(np.stack([load_patch(media / it.p0_image, 64) for it in items]))
    ours = LPIPS(net="alex", backbone_weights=trunk, head_weights=heads)
    with torch.no_grad():
        d_ours = ours(x0, x1).flatten()
        d_ref = _reference_lpips(heads, trunk)(x0, x1).flatten()
        d_bundle = load_bundle(bundle)(x0, x1).flatten()
        d_folder = load_bundle(tmp_path / folder)(x0, x1).flatten()
    torch.testing.assert_close(d_ref, d_ours, atol=1e-6, rtol=0)
    torch.testing.assert_close(d_bundle, d_ours, atol=0, rtol=0)
    torch.testing.assert_close(d_folder, d_ours, atol=0, rtol=0)
    assert float(d_ours.max()) > 0

    # the CLI: the heads and the trunk file, or the bundle, give that same number
    img0, img1 = str(media / items[0].ref_image), str(media / items[0].p0_image)
    capsys.readouterr()
    assert (
        main(
            ["distance", img0, img1, "--size", "64", "--heads", str(heads), "--backbone-weights", str(trunk)]
        )
        == 0
    )
    by_files = json.loads(capsys.readouterr().out)["distance"]
    assert main(["distance", img0, img1, "--size", "64", "--model", str(bundle)]) == 0
    by_bundle = json.loads(capsys.readouterr().out)["distance"]
    assert by_files == pytest.approx(float(d_ours[0]), abs=1e-6) and by_bundle == by_files


def test_the_dashboard_shows_the_models_panel(kmeans_study, researcher_carol, client):
    services.study_retrain(study=kmeans_study)
    version = ModelVersion.objects.get(study=kmeans_study)
    client.force_login(researcher_carol)
    page = client.get(f"/dashboard/{kmeans_study.pk}/").content.decode()
    assert 'id="models-title"' in page and "alex-kmeans-lin v1" in page
    assert f"/api/v1/models/{version.pk}/download/" in page
    assert "PERCEPTLAB_OFFLINE is set" in page  # why the k-means trunk ran


def test_the_zip_is_built_once_and_served_again(kmeans_study, researcher_carol):
    """The zip is built once; a second download serves the same bytes."""
    from rest_framework.test import APIClient

    services.study_retrain(study=kmeans_study)
    version = ModelVersion.objects.get(study=kmeans_study)
    client = APIClient()
    client.force_authenticate(researcher_carol)
    first = b"".join(client.get(f"/api/v1/models/{version.pk}/download/").streaming_content)
    second = b"".join(client.get(f"/api/v1/models/{version.pk}/download/").streaming_content)
    assert first == second and zipfile.ZipFile(io.BytesIO(first)).testzip() is None
