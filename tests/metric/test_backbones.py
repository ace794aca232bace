import pytest
import torch

import metric
from metric.backbones import BACKBONES, build_backbone, imagenet_weights_file
from metric.errors import MetricError, WeightsUnavailableError


@pytest.mark.parametrize("net", sorted(BACKBONES))
def test_taps_have_the_reference_channels_and_sizes(net):
    spec = BACKBONES[net]
    backbone = build_backbone(net, "random", seed=0)
    outs = backbone(torch.zeros(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == list(spec.channels)
    expected_hw = {"alex": [15, 7, 3, 3, 3], "vgg": [64, 32, 16, 8, 4], "squeeze": [31, 15, 7, 3, 3, 3, 3]}[
        net
    ]
    assert [o.shape[2] for o in outs] == expected_hw


def test_random_weights_are_seeded():
    a, b, c = (build_backbone("alex", "random", seed=s).features[0].weight for s in (1, 1, 2))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_backbones_are_frozen_unless_tuning():
    frozen = build_backbone("alex", "random")
    frozen.train()
    assert not frozen.training and not any(p.requires_grad for p in frozen.parameters())
    tuned = build_backbone("alex", "random", tune=True)
    tuned.train()
    assert tuned.training and all(p.requires_grad for p in tuned.parameters())
    model = metric.LPIPS(net="alex", backbone_weights="random")
    model.train()
    assert model.heads.training and not model.backbone.training


def test_imagenet_offline_names_the_file_and_where_to_put_it(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    path, url = imagenet_weights_file(BACKBONES["alex"])
    with pytest.raises(WeightsUnavailableError) as info:
        build_backbone("alex", "imagenet", allow_download=False)
    message = str(info.value)
    assert str(path) in message and url in message and "'random'" in message and "'kmeans'" in message


def test_local_file_weights_load_strictly(tmp_path):
    import torchvision

    torch.manual_seed(3)
    full = torchvision.models.alexnet(weights=None)
    torch.save(full.state_dict(), tmp_path / "alex_full.pth")
    backbone = build_backbone("alex", tmp_path / "alex_full.pth")
    assert torch.equal(backbone.features[0].weight, full.features[0].weight)
    torch.save({"features.0.weight": full.features[0].weight}, tmp_path / "partial.pth")
    with pytest.raises(MetricError, match="missing"):
        build_backbone("alex", tmp_path / "partial.pth")
    with pytest.raises(WeightsUnavailableError, match="not found"):
        build_backbone("alex", tmp_path / "nope.pth")


def test_kmeans_init_is_seeded_cached_and_data_dependent(tmp_path, real_patches):
    from metric.data import to_tensor

    corpus = to_tensor(real_patches)
    a = build_backbone("alex", "kmeans", kmeans_corpus=corpus, seed=0, cache_dir=tmp_path)
    cached = list(tmp_path.glob("alex-seed0-*.pth"))
    assert len(cached) == 1
    b = build_backbone("alex", "kmeans", kmeans_corpus=corpus, seed=0, cache_dir=tmp_path)
    assert torch.equal(a.features[0].weight, b.features[0].weight)
    # first-layer filters are unit-norm k-means centroids rescaled per channel; outputs are whitened
    with torch.no_grad():
        pre = torch.nn.functional.conv2d(
            corpus, a.features[0].weight, a.features[0].bias, stride=4, padding=2
        )
    assert pre.mean(dim=(0, 2, 3)).abs().max() < 1e-3
    assert (pre.std(dim=(0, 2, 3)) - 1).abs().max() < 1e-2
    c = build_backbone("alex", "kmeans", kmeans_corpus=corpus[:12], seed=0, cache_dir=tmp_path)
    assert not torch.equal(a.features[0].weight, c.features[0].weight)
    with pytest.raises(MetricError, match="kmeans_corpus"):
        build_backbone("alex", "kmeans")


def test_unknown_net_and_version_are_clear_errors():
    with pytest.raises(MetricError, match="unknown net"):
        build_backbone("resnet", "random")
    with pytest.raises(MetricError, match="version"):
        metric.LPIPS(net="alex", version="0.2", backbone_weights="random")


def test_bad_inputs_report_shape_and_range():
    model = metric.LPIPS(net="alex", backbone_weights="random")
    x = torch.rand(2, 3, 64, 64)
    with pytest.raises(MetricError, match=r"observed min .* max"):
        model(x * 255, x * 255)
    with pytest.raises(MetricError, match="N x 3 x H x W"):
        model(x[:, :1], x[:, :1])
    with pytest.raises(MetricError, match="same shape"):
        model(x, x[:1])
    assert model(x, x, normalize=True).shape == (2, 1, 1, 1)


def test_head_files_load_strictly(tmp_path):
    model = metric.LPIPS(net="alex", backbone_weights="random")
    state = model.heads.reference_state_dict()
    torch.save({k: v for k, v in state.items() if k != "lin4.model.1.weight"}, tmp_path / "missing.pth")
    with pytest.raises(MetricError, match="missing"):
        metric.LPIPS(net="alex", backbone_weights="random", head_weights=tmp_path / "missing.pth")
    torch.save({**state, "extra.weight": torch.zeros(1)}, tmp_path / "extra.pth")
    with pytest.raises(MetricError, match="unexpected"):
        metric.LPIPS(net="alex", backbone_weights="random", head_weights=tmp_path / "extra.pth")
    neg = dict(state)
    neg["lin0.model.1.weight"] = -neg["lin0.model.1.weight"] - 1
    torch.save(neg, tmp_path / "neg.pth")
    with pytest.raises(MetricError, match="negative"):
        metric.LPIPS(net="alex", backbone_weights="random", head_weights=tmp_path / "neg.pth")
    with pytest.warns(metric.OfficialHeadsWarning, match="random:0"):
        desc = metric.LPIPS(net="alex", backbone_weights="random").describe()
    assert desc["head_weights"] == "official:v0.1 on a non-ImageNet trunk" and "not LPIPS" in desc["warning"]
