"""Metric math shared by the LPIPS module, the fast training path and the baselines."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from metric.errors import MetricError

# ImageNet mean/std re-expressed for [-1, 1] inputs (2*mean - 1, 2*std); the reference ScalingLayer.
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
EPS = 1e-10


def check_pair(x0: torch.Tensor, x1: torch.Tensor, *, normalize: bool) -> None:
    """Fail loudly on the most common misuse: wrong shape or wrong value range."""
    for name, x in (("x0", x0), ("x1", x1)):
        if not isinstance(x, torch.Tensor):
            raise MetricError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if x.ndim != 4 or x.shape[1] != 3:
            raise MetricError(f"{name} must be N x 3 x H x W RGB, got shape {tuple(x.shape)}")
    if x0.shape != x1.shape:
        raise MetricError(f"x0 and x1 must have the same shape, got {tuple(x0.shape)} and {tuple(x1.shape)}")
    lo, hi = (0.0, 1.0) if normalize else (-1.0, 1.0)
    tol = 1e-3
    mn = float(torch.minimum(x0.detach().min(), x1.detach().min()))
    mx = float(torch.maximum(x0.detach().max(), x1.detach().max()))
    if mn < lo - tol or mx > hi + tol:
        expected = "[0, 1] (normalize=True)" if normalize else "[-1, 1] (normalize=False)"
        raise MetricError(
            f"inputs must be in {expected}; observed min {mn:.4g}, max {mx:.4g}. "
            "Use normalize=True for [0, 1] images, or map them with 2*x - 1."
        )


def normalize_tensor(x: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Unit-normalise over channels, with eps *inside* the square root: x / sqrt(sum x^2 + eps^2).

    Equal to the reference's x / (sqrt(sum x^2) + eps) up to ~eps, but with finite gradients where a
    feature vector is exactly zero (reference issue #69). Computed in float32 whatever the input dtype.
    """
    x = x.float()
    return x * torch.rsqrt(x.pow(2).sum(dim=1, keepdim=True) + eps * eps)


def spatial_average(x: torch.Tensor, keepdim: bool = True) -> torch.Tensor:
    return x.mean(dim=(2, 3), keepdim=keepdim)


def upsample(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def squared_diffs(feats0: list[torch.Tensor], feats1: list[torch.Tensor]) -> list[torch.Tensor]:
    return [(normalize_tensor(a) - normalize_tensor(b)).pow(2) for a, b in zip(feats0, feats1, strict=True)]


def layer_stats(feats0: list[torch.Tensor], feats1: list[torch.Tensor]) -> torch.Tensor:
    """Sufficient statistics of a pair for a frozen backbone: per layer, the channel vector of the
    spatial mean of squared unit-normalised feature differences, concatenated (N x sum(C_l)).
    The 1x1 head commutes with the spatial mean, so distance = stats @ concat(w_l)."""
    return torch.cat([spatial_average(d, keepdim=False) for d in squared_diffs(feats0, feats1)], dim=1)
