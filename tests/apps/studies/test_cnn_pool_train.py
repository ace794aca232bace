"""studies.services.cnn_pool_train trains the platform's pool with the LPIPS-alex feature loss."""

import torch

from distortions.cnn import trainer
from metric.features import cnn_feature_distance as lpips_alex
from studies.services import cnn_pool_train


def test_it_passes_the_lpips_alex_feature_distance(settings, tmp_path, monkeypatch):
    settings.CNN_POOL_DIR = tmp_path / "pool"
    seen = {}

    def fake_train_pool(out_dir, **kwargs):
        seen.update(kwargs)
        return {"models": [], "device": "cpu"}

    monkeypatch.setattr(trainer, "train_pool", fake_train_pool)
    assert cnn_pool_train(n_models=2)["models"] == 0
    assert seen["feature_distance"] is lpips_alex


def test_lpips_alex_is_the_unweighted_random_alexnet_distance(monkeypatch):
    monkeypatch.delenv("PERCEPTLAB_CNN_FEATURE_BACKBONE", raising=False)
    net = lpips_alex(torch.device("cpu"))
    x = torch.zeros(1, 3, 32, 32)
    assert net.describe()["net"] == "alex" and float(net(x, x).flatten()[0]) == 0.0
