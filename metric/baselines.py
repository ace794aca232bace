"""Low-level baselines, batched, with the reference's definitions (ref: lpips/__init__.py, lpips.py).

All take N x 3 x H x W tensors in [-1, 1] (or [0, 1] with normalize=True) and return N distances,
lower = more similar.

- ``l2(..., colorspace="RGB")``: mean squared error on the [-1, 1] tensors (the reference L2 'RGB').
- ``l2(..., colorspace="Lab")``: the reference L2 'Lab': images to uint8 as the reference does
  (truncation), CIELAB, then 0.5 * mean((a/100 - b/100)^2).
- ``dssim``: (1 - SSIM) / 2 with scikit-image's ``structural_similarity(channel_axis=-1)`` (the current
  API of the removed ``compare_ssim``), data range 255 on uint8 RGB or 100 on Lab.
- ``psnr``: reported as a distance, ``-PSNR`` in dB on [0, 1] (peak 1; identical images cap at 100 dB).
- ``ms_ssim``: ``1 - MS-SSIM`` (Wang et al. 2003; Gaussian window 11, sigma 1.5), with as many of the 5
  scales as the image allows (3 at 64x64) and the standard weights renormalised over them.
"""

from __future__ import annotations

import numpy as np
import torch
from skimage import color
from skimage.metrics import structural_similarity
from torch.nn import functional as F

from metric.errors import MetricError
from metric.functional import check_pair

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _to_unit(x: torch.Tensor, normalize: bool) -> torch.Tensor:
    return x if normalize else (x + 1) / 2


def to_uint8_reference(x: torch.Tensor, normalize: bool = False) -> np.ndarray:
    """N x H x W x 3 uint8 exactly as the reference's tensor2im ((x + 1) * 127.5, truncated)."""
    x = 2 * x - 1 if normalize else x
    arr = ((x.detach().cpu().float().numpy().transpose(0, 2, 3, 1) + 1.0) * (255.0 / 2.0)).astype(np.uint8)
    return arr


def l2(
    x0: torch.Tensor, x1: torch.Tensor, *, colorspace: str = "Lab", normalize: bool = False
) -> torch.Tensor:
    check_pair(x0, x1, normalize=normalize)
    if colorspace == "RGB":
        a, b = (2 * x0 - 1, 2 * x1 - 1) if normalize else (x0, x1)
        return (a.float() - b.float()).pow(2).mean(dim=(1, 2, 3))
    if colorspace == "Lab":
        a = color.rgb2lab(to_uint8_reference(x0, normalize))
        b = color.rgb2lab(to_uint8_reference(x1, normalize))
        return torch.from_numpy(0.5 * np.mean((a / 100.0 - b / 100.0) ** 2, axis=(1, 2, 3))).float()
    raise MetricError(f"colorspace must be 'RGB' or 'Lab', got {colorspace!r}")


def dssim(
    x0: torch.Tensor, x1: torch.Tensor, *, colorspace: str = "Lab", normalize: bool = False
) -> torch.Tensor:
    check_pair(x0, x1, normalize=normalize)
    a, b = to_uint8_reference(x0, normalize), to_uint8_reference(x1, normalize)
    if colorspace == "RGB":
        a, b, data_range = a.astype(np.float64), b.astype(np.float64), 255.0
    elif colorspace == "Lab":
        a, b, data_range = color.rgb2lab(a), color.rgb2lab(b), 100.0
    else:
        raise MetricError(f"colorspace must be 'RGB' or 'Lab', got {colorspace!r}")
    values = [
        (1.0 - structural_similarity(a[i], b[i], data_range=data_range, channel_axis=-1)) / 2.0
        for i in range(len(a))
    ]
    return torch.tensor(values, dtype=torch.float32)


def psnr(
    x0: torch.Tensor, x1: torch.Tensor, *, normalize: bool = False, as_distance: bool = True
) -> torch.Tensor:
    check_pair(x0, x1, normalize=normalize)
    a, b = _to_unit(x0.float(), normalize), _to_unit(x1.float(), normalize)
    mse = (a - b).pow(2).mean(dim=(1, 2, 3)).clamp_min(1e-10)
    value = 10.0 * torch.log10(1.0 / mse)
    return -value if as_distance else value


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] @ g[None, :]).float()


def _ssim_components(x: torch.Tensor, y: torch.Tensor, window: torch.Tensor, data_range: float = 1.0):
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    channels = x.shape[1]
    w = window.to(x)[None, None].expand(channels, 1, *window.shape)

    def filt(t):
        return F.conv2d(t, w, groups=channels)

    mu_x, mu_y = filt(x), filt(y)
    sxx = filt(x * x) - mu_x**2
    syy = filt(y * y) - mu_y**2
    sxy = filt(x * y) - mu_x * mu_y
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    ssim_map = ((2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)) * cs
    return ssim_map.mean(dim=(1, 2, 3)), cs.mean(dim=(1, 2, 3))


def ssim(x0: torch.Tensor, x1: torch.Tensor, *, normalize: bool = False) -> torch.Tensor:
    """Mean SSIM (Gaussian window 11, sigma 1.5, valid region) on [0, 1] RGB; higher = more similar."""
    check_pair(x0, x1, normalize=normalize)
    return _ssim_components(
        _to_unit(x0.float(), normalize), _to_unit(x1.float(), normalize), _gaussian_window()
    )[0]


def ms_ssim(
    x0: torch.Tensor, x1: torch.Tensor, *, normalize: bool = False, as_distance: bool = True
) -> torch.Tensor:
    check_pair(x0, x1, normalize=normalize)
    x, y = _to_unit(x0.float(), normalize), _to_unit(x1.float(), normalize)
    window = _gaussian_window()
    size = min(x.shape[2:])
    scales = 0
    while scales < 5 and size // (2**scales) >= window.shape[0]:
        scales += 1
    if scales == 0:
        raise MetricError(
            f"MS-SSIM needs images of at least {window.shape[0]}x{window.shape[0]}, got {tuple(x.shape[2:])}"
        )
    weights = torch.tensor(MS_SSIM_WEIGHTS[:scales])
    weights = weights / weights.sum()
    values = []
    for s in range(scales):
        full, cs = _ssim_components(x, y, window)
        values.append((full if s == scales - 1 else cs).clamp_min(1e-8))
        if s < scales - 1:
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    stacked = torch.stack(values, dim=1)
    value = torch.prod(stacked ** weights.to(stacked), dim=1)
    return 1.0 - value if as_distance else value


# name -> distance function(x0, x1, normalize) ; lower = more similar
BASELINES = {
    "l2_lab": lambda a, b, normalize=False: l2(a, b, colorspace="Lab", normalize=normalize),
    "l2_rgb": lambda a, b, normalize=False: l2(a, b, colorspace="RGB", normalize=normalize),
    "dssim_lab": lambda a, b, normalize=False: dssim(a, b, colorspace="Lab", normalize=normalize),
    "dssim_rgb": lambda a, b, normalize=False: dssim(a, b, colorspace="RGB", normalize=normalize),
    "psnr": lambda a, b, normalize=False: psnr(a, b, normalize=normalize),
    "ms_ssim": lambda a, b, normalize=False: ms_ssim(a, b, normalize=normalize),
}
