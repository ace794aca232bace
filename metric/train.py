"""Training LPIPS heads on 2AFC judgments (paper section 3, App. B; ref: train.py, lpips/trainer.py).

The recipe: a small ranking network G maps (d0, d1) to the probability that humans pick p1; BCE
against the vote fraction; Adam (lr 1e-4, betas (0.5, 0.999)) over the heads and G; batch 50;
``epochs`` at the initial rate then ``epochs_decay`` with linear decay (the reference's exact schedule:
epochs 1..epochs+1 at lr, then minus lr/epochs_decay per epoch); every head weight clamped >= 0 after
every step. Variants: ``lin`` (frozen ImageNet trunk), ``tune`` (trunk trained too), ``scratch``
(random trunk, trained).

**Fast path for lin.** With a frozen trunk the 1x1 head commutes with the spatial mean:
mean_hw(w . diff^2) = w . mean_hw(diff^2). The per-layer channel means of squared normalised
feature differences (``metric.functional.layer_stats``) are sufficient statistics, computed once per
(ref, p) pair, and a head trains on those vectors with plain matrix products.

**Dropout differs on the fast path.** The reference drops individual elements of the C x H x W
difference map (p = 0.5) before the head. After the spatial mean those elements no longer exist, so
the fast path cannot reproduce that noise. ``fast_dropout="none"`` (default) trains without it;
``"channel"`` drops whole channels of the mean vectors, which has the same expectation but more
variance. Either way the heads reach the same 2AFC as the reference-style loop within noise
(tests/metric/test_train.py checks <= 0.5 points on the same data).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from metric._util import autocast, progress_iter
from metric.backbones import KMEANS_CORPUS_SIZE, resolve_weights
from metric.backbones import kmeans_corpus as draw_kmeans_corpus
from metric.data import TwoAFCData, to_tensor
from metric.errors import MetricError
from metric.functional import layer_stats
from metric.hardware import choose_precision
from metric.lpips import LPIPS

logger = logging.getLogger(__name__)
VARIANTS = ("lin", "tune", "scratch")


class RankNet(nn.Module):
    """G: [d0, d1, d0-d1, d0/(d1+eps), d1/(d0+eps)] -> 1x1 convs 5->32->32->1 -> sigmoid (1,281 params)."""

    def __init__(self, mid: int = 32):
        super().__init__()
        self.model = nn.Sequential(
            nn.Conv2d(5, mid, 1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(mid, mid, 1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(mid, 1, 1),
            nn.Sigmoid(),
        )

    def forward(self, d0: torch.Tensor, d1: torch.Tensor, eps: float = 0.1) -> torch.Tensor:
        d0, d1 = d0.reshape(-1, 1), d1.reshape(-1, 1)
        x = torch.cat([d0, d1, d0 - d1, d0 / (d1 + eps), d1 / (d0 + eps)], dim=1)
        # 1x1 convolutions on 1x1 maps are linear layers: same parameters (and state dict), a faster kernel
        c0, c1, c2 = self.model[0], self.model[2], self.model[4]
        x = F.leaky_relu(F.linear(x, c0.weight.flatten(1), c0.bias), 0.2)
        x = F.leaky_relu(F.linear(x, c1.weight.flatten(1), c1.bias), 0.2)
        return torch.sigmoid(F.linear(x, c2.weight.flatten(1), c2.bias)).reshape(-1)


@dataclass
class TrainConfig:
    net: str = "alex"
    variant: str = "lin"
    version: str = "0.1"
    backbone_weights: str = "auto"  # ImageNet when available, else a k-means trunk drawn from the data
    epochs: int = 5
    epochs_decay: int = 5
    batch_size: int = 50
    lr: float = 1e-4
    beta1: float = 0.5
    seed: int = 0
    use_dropout: bool = True
    fast_dropout: str = "none"
    kmeans_patches: int = KMEANS_CORPUS_SIZE  # patches drawn from the training data for a k-means trunk

    def validate(self) -> None:
        if self.kmeans_patches < 1:
            raise MetricError("kmeans_patches must be >= 1")
        if self.variant not in VARIANTS:
            raise MetricError(f"variant must be one of {VARIANTS}, got {self.variant!r}")
        if self.fast_dropout not in ("none", "channel"):
            raise MetricError("fast_dropout must be 'none' or 'channel'")
        if (
            self.batch_size < 1
            or self.epochs < 0
            or self.epochs_decay < 0
            or self.epochs + self.epochs_decay < 1
        ):
            raise MetricError("batch_size >= 1 and at least one epoch are required")
        if self.lr <= 0:
            raise MetricError("lr must be > 0")

    def lr_at(self, epoch: int) -> float:
        """Learning rate of 1-based `epoch`, the reference schedule."""
        if epoch <= self.epochs + 1 or self.epochs_decay == 0:
            return self.lr
        return max(self.lr - (epoch - self.epochs - 1) * self.lr / self.epochs_decay, 0.0)

    @property
    def total_epochs(self) -> int:
        return self.epochs + self.epochs_decay


def trunk_weights(cfg: TrainConfig, *, allow_download: bool = True) -> tuple[str, str]:
    """The trunk's weight source for ``cfg`` and why, in words: ``scratch`` always starts from a random
    trunk; ``auto`` resolves (``metric.backbones.resolve_weights``); anything else passes through."""
    if cfg.variant == "scratch":
        return "random", "the scratch variant trains a random trunk"
    return resolve_weights(cfg.net, cfg.backbone_weights, allow_download=allow_download)


def training_corpus(data: TwoAFCData, cfg: TrainConfig) -> torch.Tensor:
    """The k-means corpus drawn from the training data itself: ``cfg.kmeans_patches`` patches of its
    ref, p0 and p1 images, seeded by ``cfg.seed`` (``metric.backbones.kmeans_corpus``)."""
    return draw_kmeans_corpus(data.ref, data.p0, data.p1, n=cfg.kmeans_patches, seed=cfg.seed)


def build_model(cfg: TrainConfig, *, weights: tuple[str, str] | None = None, **kwargs) -> LPIPS:
    """A model with freshly initialised heads (seeded PyTorch default init, as the reference).
    ``kwargs`` go to ``LPIPS`` (e.g. ``kmeans_corpus=``, ``kmeans_cache_dir=``); ``weights`` is an
    already resolved (source, reason) pair from ``trunk_weights`` (else the config's is used)."""
    source, reason = weights or (("random", "") if cfg.variant == "scratch" else (cfg.backbone_weights, ""))
    kwargs.setdefault("kmeans_patches", cfg.kmeans_patches)
    model = LPIPS(
        net=cfg.net,
        version=cfg.version,
        backbone_weights=source,
        head_weights="random",
        use_dropout=cfg.use_dropout,
        tune=cfg.variant != "lin",
        seed=cfg.seed,
        **kwargs,
    )
    if reason and not model.weights_reason:
        model.weights_reason = reason
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        for conv in model.heads.convs:
            conv.reset_parameters()
    return model


# --- sufficient statistics ---------------------------------------------------------------------------
@torch.no_grad()
def extract_stats(
    model: LPIPS, data: TwoAFCData, *, batch: int = 100, precision: str = "fp32", progress: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Per triplet, layer_stats(ref, p0) and layer_stats(ref, p1): N x sum(C_l) float32 each.
    The reference's features are computed once (3 backbone passes per triplet). ``precision``: fp32,
    bf16, fp16 or auto (metric.hardware.choose_precision, for the CPU)."""
    precision = choose_precision(precision, device="cpu").ran
    model.eval()
    s0, s1 = [], []
    for s in progress_iter(
        range(0, len(data), batch), (len(data) + batch - 1) // batch, "features", progress
    ):
        ref, p0, p1 = (to_tensor(a[s : s + batch]) for a in (data.ref, data.p0, data.p1))
        with autocast(precision, torch.device("cpu")):
            fr, f0, f1 = model.features(ref), model.features(p0), model.features(p1)
        s0.append(layer_stats(fr, f0))
        s1.append(layer_stats(fr, f1))
    return torch.cat(s0).numpy(), torch.cat(s1).numpy()


def train_lin_fast(
    s0: np.ndarray,
    s1: np.ndarray,
    p: np.ndarray,
    cfg: TrainConfig,
    *,
    w_init: torch.Tensor,
    progress: bool = False,
) -> tuple[torch.Tensor, RankNet, list[float]]:
    """Train flat non-negative head weights w (sum C_l) and G on cached statistics."""
    cfg.validate()
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    s0t, s1t, pt = (
        torch.from_numpy(s0).float(),
        torch.from_numpy(s1).float(),
        torch.from_numpy(np.asarray(p)).float(),
    )
    w = nn.Parameter(w_init.detach().clone().float())
    rank = RankNet()
    opt = torch.optim.Adam([w, *rank.parameters()], lr=cfg.lr, betas=(cfg.beta1, 0.999), foreach=True)
    bce = nn.BCELoss()
    n = len(pt)
    losses = []
    steps = range(cfg.total_epochs * ((n + cfg.batch_size - 1) // cfg.batch_size))
    bar = progress_iter(steps, len(steps), "train lin (fast)", progress, unit="step")
    it = iter(bar)
    for epoch in range(1, cfg.total_epochs + 1):
        for group in opt.param_groups:
            group["lr"] = cfg.lr_at(epoch)
        perm = torch.randperm(n, generator=gen)
        total = 0.0
        for start in range(0, n, cfg.batch_size):
            idx = perm[start : start + cfg.batch_size]
            a, b = s0t[idx], s1t[idx]
            if cfg.fast_dropout == "channel":
                a = a * (torch.rand(a.shape, generator=gen) >= 0.5) * 2.0
                b = b * (torch.rand(b.shape, generator=gen) >= 0.5) * 2.0
            loss = bce(rank(a @ w, b @ w), pt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                w.clamp_(min=0)
            total += float(loss.detach()) * len(idx)
            next(it, None)
        losses.append(total / n)
    if hasattr(bar, "close"):
        bar.close()
    return w.detach(), rank, losses


# --- reference-style loop ------------------------------------------------------------------------------
def train_reference_style(
    model: LPIPS, data: TwoAFCData, cfg: TrainConfig, *, progress: bool = False
) -> tuple[RankNet, list[float]]:
    """The reference recipe on full forward passes (dropout active on the heads). For lin the trunk is
    frozen and its features need no gradients; tune/scratch backpropagate into the trunk."""
    cfg.validate()
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    rank = RankNet()
    params = [*model.heads.parameters(), *rank.parameters()]
    if cfg.variant != "lin":
        params += [p for p in model.backbone.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.lr, betas=(cfg.beta1, 0.999))
    bce = nn.BCELoss()
    size = tuple(data.ref.shape[1:3])
    n = len(data)
    losses = []
    model.train()
    steps = cfg.total_epochs * ((n + cfg.batch_size - 1) // cfg.batch_size)
    it = iter(progress_iter(range(steps), steps, f"train {cfg.variant}", progress, unit="step"))
    for epoch in range(1, cfg.total_epochs + 1):
        for group in opt.param_groups:
            group["lr"] = cfg.lr_at(epoch)
        perm = torch.randperm(n, generator=gen).numpy()
        total = 0.0
        for start in range(0, n, cfg.batch_size):
            idx = perm[start : start + cfg.batch_size]
            ref, p0, p1 = (to_tensor(a[idx]) for a in (data.ref, data.p0, data.p1))
            with torch.set_grad_enabled(cfg.variant != "lin"):
                fr, f0, f1 = model.features(ref), model.features(p0), model.features(p1)
            d0 = model.distance_from_features(fr, f0, size)
            d1 = model.distance_from_features(fr, f1, size)
            loss = bce(rank(d0, d1), torch.from_numpy(data.p[idx]).float())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            model.heads.clamp_()
            total += float(loss) * len(idx)
            next(it, None)
        losses.append(total / n)
    model.eval()
    return rank, losses


@dataclass
class TrainResult:
    model: LPIPS
    rank: RankNet
    losses: list
    config: TrainConfig
    seconds: float
    path: str

    @property
    def ships_trunk(self) -> bool:
        """Whether the trunk must travel with the heads: anything but a frozen torchvision ImageNet trunk
        (k-means, random, a file, or a trunk that was trained)."""
        return self.model.backbone.source != "imagenet" or self.config.variant != "lin"

    def save(self, out_dir: str | os.PathLike) -> Path:
        """heads.pth (reference format), rank.pth (G), trunk.pth when ``ships_trunk`` (load it with
        ``backbone_weights=OUT/trunk.pth``) and config.json with timing and provenance."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.model.save_heads(out / "heads.pth")
        torch.save(self.rank.state_dict(), out / "rank.pth")
        trunk = None
        if self.ships_trunk:
            trunk = "trunk.pth"
            self.model.save_trunk(out / trunk)
        meta = {
            "config": asdict(self.config),
            "losses": self.losses,
            "seconds": self.seconds,
            "path": self.path,
            "model": self.model.describe(),
            "trunk": trunk,
        }
        (out / "config.json").write_text(json.dumps(meta, indent=2) + "\n")
        return out / "heads.pth"


def train_heads(
    data: TwoAFCData,
    cfg: TrainConfig,
    *,
    fast: bool = True,
    progress: bool = False,
    model: LPIPS | None = None,
    stats: tuple[np.ndarray, np.ndarray] | None = None,
    kmeans_corpus=None,
    kmeans_corpus_from: str | None = None,
    kmeans_cache_dir: str | os.PathLike | None = None,
) -> TrainResult:
    """Train heads with the recipe; ``fast`` uses cached statistics (lin only).

    Without ``model``, the trunk comes from ``cfg`` (``trunk_weights``). A k-means trunk (asked for, or
    what ``auto`` chose) is initialised on ``kmeans_corpus`` when given (a tensor or uint8 arrays), else
    on ``training_corpus(data, cfg)``; ``model.describe()["kmeans_corpus"]`` records seed, patches,
    digest and where it came from (``kmeans_corpus_from``)."""
    cfg.validate()
    start = time.perf_counter()
    if model is None:
        weights = trunk_weights(cfg)
        kwargs: dict = {"kmeans_cache_dir": kmeans_cache_dir}
        origin = kmeans_corpus_from
        if weights[0] == "kmeans":
            if kmeans_corpus is None:
                if len(data) == 0:
                    raise MetricError("a k-means trunk drawn from the training data needs training data")
                kmeans_corpus = training_corpus(data, cfg)
                origin = origin or "the training data (ref, p0, p1)"
            kwargs["kmeans_corpus"] = kmeans_corpus
        if weights[1]:
            logger.info("trunk: %s", weights[1])
        model = build_model(cfg, weights=weights, **kwargs)
        if model.kmeans_corpus_info is not None:
            model.kmeans_corpus_info["from"] = origin or "given by the caller"
    if fast:
        if cfg.variant != "lin":
            raise MetricError("the fast path needs a frozen trunk: use variant='lin' or fast=False")
        s0, s1 = stats if stats is not None else extract_stats(model, data, progress=progress)
        w, rank, losses = train_lin_fast(
            s0, s1, data.p, cfg, w_init=model.heads.flat_weights(), progress=progress
        )
        model.heads.set_flat_weights(w)
    else:
        rank, losses = train_reference_style(model, data, cfg, progress=progress)
    seconds = time.perf_counter() - start
    logger.info("trained %s/%s heads on %d triplets in %.1fs", cfg.net, cfg.variant, len(data), seconds)
    return TrainResult(model, rank, losses, cfg, seconds, "fast" if fast else "reference-style")
