import numpy as np
import pytest
import torch

import metric
from metric.data import to_tensor
from metric.evaluate import lpips_2afc_distances
from metric.scoring import two_afc_score
from metric.train import RankNet, TrainConfig, build_model, extract_stats, train_heads


def test_rank_net_is_the_papers_g():
    g = RankNet()
    assert sum(p.numel() for p in g.parameters()) == 1281
    out = g(torch.tensor([0.1, 0.5]), torch.tensor([0.5, 0.1]))
    assert out.shape == (2,) and bool(((out > 0) & (out < 1)).all())


def test_learning_rate_schedule_is_the_references():
    cfg = TrainConfig()
    assert [round(cfg.lr_at(e), 8) for e in range(1, 11)] == [1e-4] * 6 + [8e-5, 6e-5, 4e-5, 2e-5]


@pytest.mark.slow
def test_fast_path_matches_the_reference_style_loop(synthetic_data):
    """Same data, same recipe: the cached-statistics path and the full forward loop agree within
    0.5 2AFC points on held-out triplets, and both reach the hidden observer's own agreement."""
    train, val = synthetic_data.subset(np.arange(900)), synthetic_data.subset(np.arange(900, 1200))
    cfg = TrainConfig(backbone_weights="random", seed=7, lr=1e-3)
    observer = metric.LPIPS(
        net="alex", backbone_weights="random", seed=7, head_weights="official", warn_official_heads=False
    )
    ceiling = two_afc_score(*lpips_2afc_distances(observer, val), val.p)
    fast = train_heads(train, cfg, fast=True)
    slow = train_heads(train, cfg, fast=False)
    s_fast = two_afc_score(*lpips_2afc_distances(fast.model, val), val.p)
    s_slow = two_afc_score(*lpips_2afc_distances(slow.model, val), val.p)
    assert abs(s_fast - s_slow) * 100 <= 0.5, (s_fast, s_slow)
    assert s_fast > ceiling - 0.015, (s_fast, ceiling)
    for result in (fast, slow):
        assert all(bool((c.weight >= 0).all()) for c in result.model.heads.convs)
        assert result.losses[-1] < result.losses[0]


def test_trained_heads_round_trip_through_the_reference_format(synthetic_data, tmp_path):
    train = synthetic_data.subset(np.arange(200))
    cfg = TrainConfig(backbone_weights="random", seed=7, epochs=1, epochs_decay=1)
    result = train_heads(train, cfg, fast=True)
    path = result.save(tmp_path / "run")
    # a random trunk is not a standard torchvision one, so it ships with the heads
    assert {p.name for p in (tmp_path / "run").iterdir()} == {
        "heads.pth",
        "rank.pth",
        "config.json",
        "trunk.pth",
    }
    loaded = metric.LPIPS(net="alex", backbone_weights="random", seed=7, head_weights=path)
    torch.testing.assert_close(loaded.heads.flat_weights(), result.model.heads.flat_weights())
    shipped = metric.LPIPS(net="alex", backbone_weights=tmp_path / "run" / "trunk.pth", head_weights=path)
    assert shipped.describe()["backbone_weights"] == "file:trunk.pth"
    assert set(torch.load(tmp_path / "run" / "trunk.pth", weights_only=True)) == set(
        result.model.backbone.features.state_dict()
    )  # the plain features state dict, as bundles ship it
    x0, x1 = (to_tensor(a[:4]) for a in (train.ref, train.p0))
    torch.testing.assert_close(shipped(x0, x1), loaded(x0, x1))


def test_fast_path_stats_reproduce_the_full_distance(synthetic_data):
    data = synthetic_data.subset(np.arange(20))
    model = metric.LPIPS(net="alex", backbone_weights="random", seed=7)
    s0, s1 = extract_stats(model, data)
    w = model.heads.flat_weights().detach().numpy()
    d0, d1 = lpips_2afc_distances(model, data)
    np.testing.assert_allclose(s0 @ w, d0, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(s1 @ w, d1, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("variant", ["tune", "scratch"])
def test_tune_and_scratch_train_the_trunk(variant, synthetic_data):
    data = synthetic_data.subset(np.arange(20))
    cfg = TrainConfig(
        variant=variant, backbone_weights="random", seed=1, epochs=1, epochs_decay=0, batch_size=10
    )
    model = build_model(cfg)
    before = model.backbone.features[0].weight.detach().clone()
    result = train_heads(data, cfg, fast=False, model=model)
    assert not torch.equal(before, result.model.backbone.features[0].weight)
    with pytest.raises(metric.MetricError, match="frozen trunk"):
        train_heads(data, cfg, fast=True)


def test_rank_net_linear_form_equals_its_1x1_convolutions():
    g = RankNet()
    d0, d1 = torch.rand(9), torch.rand(9)
    x = torch.stack([d0, d1, d0 - d1, d0 / (d1 + 0.1), d1 / (d0 + 0.1)], dim=1).reshape(9, 5, 1, 1)
    torch.testing.assert_close(g(d0, d1), g.model(x).reshape(-1), atol=1e-6, rtol=0)
    assert set(g.state_dict()) == {f"model.{i}.{p}" for i in (0, 2, 4) for p in ("weight", "bias")}
