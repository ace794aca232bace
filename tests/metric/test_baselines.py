import numpy as np
import pytest
import torch
from skimage import color
from skimage.metrics import structural_similarity

from metric import baselines
from metric.data import to_tensor

lpips_ref = pytest.importorskip("lpips")


def test_l2_matches_the_reference_in_both_colorspaces(real_patches):
    x = to_tensor(real_patches[:6])
    a, b = x[:3], x[3:]
    for space in ("Lab", "RGB"):
        ours = baselines.l2(a, b, colorspace=space)
        ref = lpips_ref.L2(use_gpu=False, colorspace=space)
        expected = torch.tensor([float(ref(a[i : i + 1], b[i : i + 1])) for i in range(3)])
        torch.testing.assert_close(ours, expected, atol=1e-6, rtol=1e-5)


def test_dssim_is_the_reference_definition_with_the_current_skimage_api(real_patches):
    x = to_tensor(real_patches[:4])
    ours_rgb = baselines.dssim(x[:2], x[2:], colorspace="RGB")
    ours_lab = baselines.dssim(x[:2], x[2:], colorspace="Lab")
    for i in range(2):
        u0 = lpips_ref.tensor2im(x[i : i + 1]).astype(float)
        u1 = lpips_ref.tensor2im(x[2 + i : 3 + i]).astype(float)
        rgb = (1 - structural_similarity(u0, u1, data_range=255.0, channel_axis=-1)) / 2
        lab = (
            1
            - structural_similarity(
                color.rgb2lab(u0.astype(np.uint8)),
                color.rgb2lab(u1.astype(np.uint8)),
                data_range=100.0,
                channel_axis=-1,
            )
        ) / 2
        assert float(ours_rgb[i]) == pytest.approx(rgb, abs=1e-6)
        assert float(ours_lab[i]) == pytest.approx(lab, abs=1e-6)


def test_psnr_matches_the_formula():
    x = torch.zeros(1, 3, 8, 8)
    y = torch.full((1, 3, 8, 8), 0.1)
    assert float(baselines.psnr(x, y, normalize=True, as_distance=False)) == pytest.approx(20.0, abs=1e-4)
    assert float(baselines.psnr(x, x, normalize=True, as_distance=False)) == pytest.approx(100.0)


def test_ssim_matches_scikit_image_gaussian_ssim(real_patches):
    x = to_tensor(real_patches[:2])
    ours = float(baselines.ssim(x[:1], x[1:2]))
    u = [((t[0].permute(1, 2, 0).numpy() + 1) / 2).astype(np.float64) for t in (x[:1], x[1:2])]
    ref = structural_similarity(
        u[0],
        u[1],
        data_range=1.0,
        channel_axis=-1,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
    )
    assert ours == pytest.approx(ref, abs=2e-3)


def test_ms_ssim_is_zero_distance_for_identical_and_grows_with_noise(real_patches):
    x = to_tensor(real_patches[:4])
    gen = torch.Generator().manual_seed(0)
    d = [
        baselines.ms_ssim(x, (x + s * torch.randn(x.shape, generator=gen)).clamp(-1, 1)).mean().item()
        for s in (0, 0.05, 0.3)
    ]
    assert d[0] == pytest.approx(0.0, abs=1e-5) and d[0] < d[1] < d[2]
    with pytest.raises(Exception, match="at least"):
        baselines.ms_ssim(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8))


@pytest.mark.parametrize("name", sorted(baselines.BASELINES))
def test_every_baseline_is_batched_and_ranks_noise(name, real_patches):
    x = to_tensor(real_patches[:5])
    gen = torch.Generator().manual_seed(1)
    light = (x + 0.03 * torch.randn(x.shape, generator=gen)).clamp(-1, 1)
    heavy = (x + 0.4 * torch.randn(x.shape, generator=gen)).clamp(-1, 1)
    fn = baselines.BASELINES[name]
    dl, dh = fn(x, light), fn(x, heavy)
    assert dl.shape == (5,) and bool((dl < dh).all())
