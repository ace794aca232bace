"""Evaluate metrics against human judgments: 2AFC and JND per category, with bootstrap CIs."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from metric._util import autocast, progress_iter
from metric.backbones import KMEANS_CORPUS_SIZE
from metric.baselines import BASELINES
from metric.data import JNDData, TwoAFCData, to_tensor
from metric.errors import MetricError
from metric.functional import EPS
from metric.hardware import choose_precision
from metric.lpips import LPIPS
from metric.scoring import (
    bootstrap_ci,
    human_ceiling_loo_per_item,
    human_ceiling_plugin,
    jnd_average_precision,
    oracle_score,
    two_afc_per_item,
)


def _batches(n: int, batch: int, progress: bool, desc: str):
    return progress_iter(range(0, n, batch), (n + batch - 1) // batch, desc, progress)


# bf16 near-tie refinement: a triplet whose bf16 distances differ by less than this fraction of their
# mean is re-scored in fp32, so bf16 decisions agree with fp32 (bf16 distances carry ~0.5% error).
TIE_MARGIN = 0.02


def _prepared_batch(model: LPIPS, arrays: list[np.ndarray], device, dtype=torch.float32) -> torch.Tensor:
    """uint8 N x H x W x 3 arrays -> the backbone's input in one fused affine pass, channels-last:
    x = u8 / 127.5 - 1 (the [-1, 1] convention), then the version's ImageNet scaling. Under bf16 the
    result is emitted in bf16 directly (autocast would cast it before the first conv anyway)."""
    u8 = (
        torch.from_numpy(np.concatenate(arrays)).to(device).permute(0, 3, 1, 2)
    )  # NHWC memory = channels-last
    if model.version == "0.1":
        a = (1.0 / (127.5 * model.scale)).to(device)
        b = ((-1.0 - model.shift) / model.scale).to(device)
    else:
        a = torch.full((1, 3, 1, 1), 1.0 / 127.5, device=device)
        b = torch.full((1, 3, 1, 1), -1.0, device=device)
    x = torch.addcmul(b, u8.float(), a)
    return (x if dtype == torch.float32 else x.to(dtype)).contiguous(memory_format=torch.channels_last)


@torch.no_grad()
def _triplet_distances(
    model: LPIPS, arrays: list[np.ndarray], precision: str, device
) -> tuple[torch.Tensor, torch.Tensor]:
    """One backbone call over ref, p0 and p1 together (3 passes' worth, not the reference's 4); each
    image's features are normalised once (in fp32). The 1x1 heads commute with the spatial mean, so
    the distance is the per-layer spatial mean of squared differences dotted with the head weights."""
    n = len(arrays[0])
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    x = _prepared_batch(model, arrays, device, dtype)
    with autocast(precision, device):
        feats = model.backbone(x)
    d0 = torch.zeros(n, device=device)
    d1 = torch.zeros(n, device=device)
    eps2 = EPS * EPS
    for k, f in enumerate(feats):
        # normalize_tensor, in place on one fp32 copy (eps inside the sqrt)
        z = f.float() if f.dtype != torch.float32 else f.clone()
        z.mul_(torch.rsqrt(z.square().sum(dim=1, keepdim=True).add_(eps2)))
        r, a, b = z[:n], z[n : 2 * n], z[2 * n :]
        s0 = torch.sub(r, a).square_().mean(dim=(2, 3))
        s1 = torch.sub(r, b).square_().mean(dim=(2, 3))
        if model.heads is None:
            d0 += s0.sum(dim=1)
            d1 += s1.sum(dim=1)
        else:
            w = model.heads.convs[k].weight.reshape(-1)
            d0 += s0 @ w
            d1 += s1 @ w
    return d0, d1


@torch.no_grad()
def lpips_2afc_distances(
    model: LPIPS,
    data: TwoAFCData,
    *,
    batch: int = 50,
    precision: str = "fp32",
    device: str | torch.device = "cpu",
    progress: bool = False,
    refine_ties: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """d(ref, p0), d(ref, p1) for every triplet. The reference patch's features are computed once and
    reused for both pairs. ``precision``: fp32, bf16, fp16 or auto (metric.hardware.choose_precision:
    bf16 on a CPU with bf16 units, fp16 on CUDA >= 7.0, else fp32). With bf16/fp16, near-ties
    (|d0 - d1| < TIE_MARGIN * mean) are re-scored in fp32 unless ``refine_ties=False``."""
    device = torch.device(device)
    precision = choose_precision(precision, device=device).ran
    model = model.to(device).eval()
    if model.spatial:
        raise MetricError("2AFC evaluation needs scalar distances: build the model with spatial=False")
    model.backbone.to(memory_format=torch.channels_last)
    d0s, d1s = [], []
    for s in _batches(len(data), batch, progress, "2afc"):
        arrays = [a[s : s + batch] for a in (data.ref, data.p0, data.p1)]
        d0, d1 = _triplet_distances(model, arrays, precision, device)
        if precision != "fp32" and refine_ties:
            ties = ((d0 - d1).abs() < TIE_MARGIN * (d0 + d1) / 2).nonzero().flatten().cpu().numpy()
            if len(ties):
                t0, t1 = _triplet_distances(model, [a[ties] for a in arrays], "fp32", device)
                d0[torch.from_numpy(ties).to(d0.device)], d1[torch.from_numpy(ties).to(d1.device)] = t0, t1
        d0s.append(d0.cpu())
        d1s.append(d1.cpu())
    return torch.cat(d0s).numpy().astype(np.float64), torch.cat(d1s).numpy().astype(np.float64)


def baseline_2afc_distances(
    fn: Callable, data: TwoAFCData, *, batch: int = 50
) -> tuple[np.ndarray, np.ndarray]:
    d0s, d1s = [], []
    for s in range(0, len(data), batch):
        ref, p0, p1 = (to_tensor(a[s : s + batch]) for a in (data.ref, data.p0, data.p1))
        d0s.append(fn(ref, p0).flatten())
        d1s.append(fn(ref, p1).flatten())
    return torch.cat(d0s).numpy().astype(np.float64), torch.cat(d1s).numpy().astype(np.float64)


@torch.no_grad()
def pair_distances(metric, p0: np.ndarray, p1: np.ndarray, *, batch: int = 50, device="cpu") -> np.ndarray:
    out = []
    for s in range(0, len(p0), batch):
        a, b = to_tensor(p0[s : s + batch]), to_tensor(p1[s : s + batch])
        if isinstance(metric, LPIPS):
            out.append(metric.to(device).eval()(a.to(device), b.to(device)).float().flatten().cpu())
        else:
            out.append(metric(a, b).flatten())
    return torch.cat(out).numpy().astype(np.float64)


def resolve_metrics(
    names: list[str],
    *,
    backbone_weights: str = "imagenet",
    version: str = "0.1",
    seed: int = 0,
    heads: dict[str, str] | None = None,
    kmeans_corpus=None,
    kmeans_patches: int = KMEANS_CORPUS_SIZE,
) -> dict:
    """'l2_lab', 'dssim_rgb', 'psnr', 'ms_ssim', 'lpips-alex', 'lpips-vgg', 'deep-alex' (unweighted) ...;
    ``heads`` maps a name to a head file for trained heads; ``kmeans_corpus`` (and ``kmeans_patches``)
    go to every LPIPS, for ``backbone_weights="kmeans"`` (or ``"auto"`` resolving to it)."""
    out = {}
    for name in names:
        if name in BASELINES:
            out[name] = BASELINES[name]
        elif name.startswith(("lpips-", "deep-")):
            kind, net = name.split("-", 1)
            head = (heads or {}).get(name, "official") if kind == "lpips" else None
            out[name] = LPIPS(
                net=net,
                version=version,
                backbone_weights=backbone_weights,
                head_weights=head,
                seed=seed,
                kmeans_corpus=kmeans_corpus,
                kmeans_patches=kmeans_patches,
            )
        else:
            raise MetricError(
                f"unknown metric {name!r}; baselines {sorted(BASELINES)}, or lpips-<net>, deep-<net>"
            )
    return out


def evaluate_2afc(
    data: TwoAFCData,
    metrics: dict,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    precision: str = "fp32",
    progress: bool = False,
) -> dict:
    """Per category and overall ('all' = unweighted mean of per-category scores, as the paper).
    ``precision`` (fp32, bf16, fp16 or auto) is resolved once; the report's ``precision`` says what was
    asked, what ran and why, and ``hardware`` the machine (metric.hardware)."""
    from metric.hardware import detect

    hardware = detect(cuda=False)
    choice = choose_precision(precision, device="cpu", hardware=hardware)
    cats = sorted(set(data.categories))
    cat_idx = {c: np.array([i for i, x in enumerate(data.categories) if x == c]) for c in cats}
    report: dict = {
        "n": len(data),
        "precision": choice.describe(),
        "hardware": hardware.describe(),
        "categories": {},
        "metrics": {},
    }
    for c in cats:
        p = data.p[cat_idx[c]]
        entry = {"n": len(p), "oracle": oracle_score(p), "human_plugin": human_ceiling_plugin(p)}
        if data.n_votes is not None and np.all(data.n_votes[cat_idx[c]] >= 2):
            n = data.n_votes[cat_idx[c]]
            entry["human_loo"] = float(human_ceiling_loo_per_item(np.rint(p * n), n).mean())
        report["categories"][c] = entry
    for name, metric in metrics.items():
        if isinstance(metric, LPIPS):
            d0, d1 = lpips_2afc_distances(metric, data, precision=choice.ran, progress=progress)
        else:
            d0, d1 = baseline_2afc_distances(metric, data)
        per_item = two_afc_per_item(d0, d1, data.p)
        by_cat = {}
        for c in cats:
            scores = per_item[cat_idx[c]]
            lo, hi = (
                bootstrap_ci(lambda idx, s=scores: s[idx].mean(), len(scores), n_boot=n_boot, seed=seed)
                if len(scores) > 1
                else (float("nan"),) * 2
            )
            by_cat[c] = {"score": float(scores.mean()), "ci_low": lo, "ci_high": hi}
        report["metrics"][name] = {
            "categories": by_cat,
            "all": float(np.mean([v["score"] for v in by_cat.values()])),
            "describe": metric.describe() if isinstance(metric, LPIPS) else {"metric": name},
        }
    return report


def evaluate_jnd(data: JNDData, metrics: dict) -> dict:
    cats = sorted(set(data.categories))
    report: dict = {"n": len(data), "metrics": {}}
    for name, metric in metrics.items():
        d = pair_distances(metric, data.p0, data.p1)
        by_cat = {}
        for c in cats:
            idx = np.array([i for i, x in enumerate(data.categories) if x == c])
            by_cat[c] = {"map": jnd_average_precision(d[idx], data.same[idx]), "n": len(idx)}
        report["metrics"][name] = {
            "categories": by_cat,
            "all": float(np.mean([v["map"] for v in by_cat.values()])),
        }
    return report
