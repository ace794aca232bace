"""Parity with the reference `lpips` package: same (seeded random) backbone, official heads."""

import numpy as np
import pytest
import torch

import metric
from metric.data import to_tensor

lpips_ref = pytest.importorskip("lpips")
# official heads on seeded random trunks, on purpose: parity of the arithmetic, not a meaningful LPIPS
pytestmark = pytest.mark.filterwarnings("ignore::metric.OfficialHeadsWarning")
NETS = ["alex", "vgg", "squeeze"]
VERSIONS = ["0.1", "0.0"]


def reference_with_our_backbone(ours: metric.LPIPS, version: str, **kwargs):
    ref = lpips_ref.LPIPS(net=ours.net, version=version, pnet_rand=True, verbose=False, **kwargs)
    feats = ours.backbone.features.state_dict()
    ref.net.load_state_dict({k: feats[k.split(".", 1)[1]] for k in ref.net.state_dict()}, strict=True)
    return ref.eval()


@pytest.fixture(scope="module", params=NETS)
def net(request):
    return request.param


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("size", [64, 96])
def test_distances_match_the_reference_on_random_inputs(net, version, size):
    ours = metric.LPIPS(net=net, version=version, backbone_weights="random", seed=11)
    ref = reference_with_our_backbone(ours, version)
    gen = torch.Generator().manual_seed(size)
    x0 = torch.rand(3, 3, size, size, generator=gen) * 2 - 1
    x1 = (x0 + 0.4 * torch.randn(x0.shape, generator=gen)).clamp(-1, 1)
    with torch.no_grad():
        a, b = ours(x0, x1), ref(x0, x1)
    assert a.shape == (3, 1, 1, 1)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


@pytest.mark.parametrize("version", VERSIONS)
def test_distances_and_spatial_maps_match_on_real_patches(net, version, real_patches):
    ours = metric.LPIPS(net=net, version=version, backbone_weights="random", seed=5, spatial=True)
    ref = reference_with_our_backbone(ours, version, spatial=True)
    x = to_tensor(real_patches)
    x0, x1 = x[0::3], x[1::3]
    with torch.no_grad():
        a, b = ours(x0, x1), ref(x0, x1)
        a01, b01 = (
            ours((x0 + 1) / 2, (x1 + 1) / 2, normalize=True),
            ref((x0 + 1) / 2, (x1 + 1) / 2, normalize=True),
        )
    assert a.shape == (8, 1, 64, 64)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    torch.testing.assert_close(a01, b01, atol=1e-5, rtol=0)


def test_per_layer_outputs_match(net, real_patches):
    ours = metric.LPIPS(net=net, backbone_weights="random", seed=2)
    ref = reference_with_our_backbone(ours, "0.1")
    x = to_tensor(real_patches[:6])
    with torch.no_grad():
        va, la = ours(x[:3], x[3:], retPerLayer=True)
        vb, lb = ref(x[:3], x[3:], retPerLayer=True)
    assert len(la) == len(lb) == len(metric.BACKBONES[net].channels)
    for a, b in zip(la, lb, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_unweighted_baseline_matches_the_reference(net, real_patches):
    ours = metric.LPIPS(net=net, backbone_weights="random", seed=3, head_weights=None)
    ref = lpips_ref.LPIPS(net=net, pnet_rand=True, lpips=False, verbose=False)
    feats = ours.backbone.features.state_dict()
    ref.net.load_state_dict({k: feats[k.split(".", 1)[1]] for k in ref.net.state_dict()})
    x = to_tensor(real_patches[:6])
    with torch.no_grad():
        torch.testing.assert_close(ours(x[:3], x[3:]), ref.eval()(x[:3], x[3:]), atol=1e-5, rtol=0)


def test_our_trained_heads_load_in_the_reference_and_back(net, tmp_path, real_patches):
    ours = metric.LPIPS(net=net, backbone_weights="random", seed=4, head_weights="random")
    path = ours.save_heads(tmp_path / f"{net}.pth")
    ref = reference_with_our_backbone(ours, "0.1", model_path=str(path))
    state = torch.load(path, weights_only=True)
    assert set(state) == {k for k in ref.state_dict() if k.startswith("lin") and not k.startswith("lins.")}
    x = to_tensor(real_patches[:6])
    with torch.no_grad():
        torch.testing.assert_close(ours(x[:3], x[3:]), ref(x[:3], x[3:]), atol=1e-5, rtol=0)
    # and a head file written by the reference's model loads strictly into ours
    ref_path = tmp_path / "from_ref.pth"
    torch.save(
        {k: v for k, v in ref.state_dict().items() if k.startswith("lin") and not k.startswith("lins.")},
        ref_path,
    )
    again = metric.LPIPS(net=net, backbone_weights="random", seed=4, head_weights=ref_path)
    with torch.no_grad():
        torch.testing.assert_close(again(x[:3], x[3:]), ours(x[:3], x[3:]), atol=0, rtol=0)


# Exact zeros / count and sum per layer of the shipped head files (docs/science.md, "LPIPS versions and
# the shipped heads").
FIXTURE = {
    ("alex", "0.1"): [(35, 2.35), (55, 16.14), (37, 39.27), (18, 27.20), (5, 20.32)],
    ("alex", "0.0"): [(43, 2.57), (102, 10.26), (63, 22.43), (42, 16.31), (7, 13.93)],
    ("vgg", "0.1"): [(0, 6.93), (0, 8.86), (0, 17.52), (0, 51.52), (0, 47.03)],
    ("squeeze", "0.1"): [
        (13, 5.69),
        (27, 1.19),
        (18, 16.33),
        (10, 71.01),
        (17, 37.37),
        (22, 24.26),
        (12, 17.59),
    ],
}


@pytest.mark.parametrize("key", sorted(FIXTURE))
def test_official_heads_load_with_the_known_statistics(key):
    net, version = key
    model = metric.LPIPS(net=net, version=version, backbone_weights="random")
    for conv, (zeros, total) in zip(model.heads.convs, FIXTURE[key], strict=True):
        w = conv.weight.detach()
        assert int((w == 0).sum()) == zeros
        assert float(w.sum()) == pytest.approx(total, abs=0.01)
        assert bool((w >= 0).all())


def test_gradients_are_finite_at_zero_features():
    from metric.functional import normalize_tensor

    x = torch.zeros(1, 4, 3, 3, requires_grad=True)
    normalize_tensor(x).sum().backward()
    assert torch.isfinite(x.grad).all()
    model = metric.LPIPS(net="alex", backbone_weights="random")
    a = torch.zeros(1, 3, 64, 64, requires_grad=True)
    model(a, torch.zeros(1, 3, 64, 64)).sum().backward()
    assert torch.isfinite(a.grad).all()


def test_lpips_is_zero_for_identical_and_grows_with_noise(real_patches):
    model = metric.LPIPS(net="alex", backbone_weights="random", seed=1)
    x = to_tensor(real_patches[:4])
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        d = [
            float(model(x, (x + s * torch.randn(x.shape, generator=gen)).clamp(-1, 1)).mean())
            for s in (0.0, 0.1, 0.4)
        ]
    assert d[0] == pytest.approx(0.0, abs=1e-7) and d[0] < d[1] < d[2]
    assert np.isfinite(d).all()
