"""The LPIPS module, with the reference's API shape (Zhang et al. 2018; ref: lpips/lpips.py).

>>> import torch, metric
>>> model = metric.LPIPS(net="alex", version="0.1", backbone_weights="random", head_weights="random")
>>> x0, x1 = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
>>> model(x0, x1, normalize=True).shape
torch.Size([2, 1, 1, 1])
"""

from __future__ import annotations

import os
import warnings
from typing import ClassVar

import torch
from torch import nn

from metric.backbones import (
    AUTO,
    KMEANS_CORPUS_SIZE,
    Backbone,
    as_kmeans_corpus,
    build_backbone,
    corpus_digest,
    resolve_weights,
)
from metric.errors import MetricError
from metric.functional import SCALE, SHIFT, check_pair, squared_diffs, upsample
from metric.heads import VERSIONS, LinearHeads, load_head_file, official_head_path, save_head_file


class OfficialHeadsWarning(UserWarning):
    """The official lpips heads run on a trunk they were not trained on (anything but ImageNet's)."""


def official_heads_warning(net: str, source: str) -> str:
    return (
        f"the official lpips heads for {net} were trained on torchvision's ImageNet trunk, but this trunk "
        f"is {source}: its distances are not LPIPS. Pass heads trained on this trunk "
        "(head_weights=PATH, or a trained model's heads.pth with its trunk.pth), head_weights=None for "
        "the unweighted distance, or backbone_weights='imagenet'."
    )


class LPIPS(nn.Module):
    """Learned Perceptual Image Patch Similarity.

    Args:
        net: "alex" | "vgg" | "squeeze" (or torchvision names alexnet, vgg16, squeezenet1_1).
        version: "0.1" (default; applies the ImageNet scaling) or "0.0" (the original release, whose
            scaling was computed but unused).
        backbone_weights: "auto" | "imagenet" | "random" | "kmeans" | path to a .pth file (e.g. the
            trunk.pth a trained model shipped with). "auto" is ImageNet when its weights file is present
            or can be fetched, else kmeans (``metric.backbones.resolve_weights``; the reason is kept in
            ``weights_reason``).
        head_weights: "official" (the shipped lpips heads for net/version; they were trained on
            torchvision's ImageNet trunks, so on any other trunk they warn, ``OfficialHeadsWarning``, and
            ``describe()`` says so), a path to a head file in the reference format, "random"
            (non-negative random init, for training), or None for the
            unweighted baseline (sum over channels, the paper's plain-network rows).
        spatial: return N x 1 x H x W maps instead of N x 1 x 1 x 1.
        use_dropout: dropout (p=0.5) before each head, as the reference (inert in eval mode).
        tune: let the backbone train (the "tune" and "scratch" variants).
        seed: seed of the random/kmeans backbone and of random heads.
        kmeans_corpus: patches for the kmeans backbone: an N x 3 x H x W tensor in [-1, 1] (used as
            is), or uint8 N x H x W x 3 numpy arrays (one or a list), from which ``kmeans_patches``
            patches are drawn with ``metric.backbones.kmeans_corpus`` seeded by ``seed``.
        kmeans_patches: how many patches to draw from numpy arrays (default 512).
        kmeans_cache_dir: where the k-means trunk is cached (default ~/.cache/perceptlab/kmeans).
        warn_official_heads: warn when official heads run on a trunk that is not ImageNet's (default
            True; pass False only where that pairing is deliberate, e.g. a simulated observer).

    Call as ``model(x0, x1, normalize=False)``: inputs in [-1, 1], or [0, 1] with ``normalize=True``.
    """

    higher_is_better: ClassVar[bool] = False
    is_differentiable: ClassVar[bool] = True

    def __init__(
        self,
        net: str = "alex",
        version: str = "0.1",
        backbone_weights: str | os.PathLike = "imagenet",
        head_weights: str | os.PathLike | None = "official",
        *,
        spatial: bool = False,
        use_dropout: bool = True,
        tune: bool = False,
        seed: int = 0,
        kmeans_corpus=None,
        kmeans_patches: int = KMEANS_CORPUS_SIZE,
        kmeans_cache_dir: str | os.PathLike | None = None,
        allow_download: bool = True,
        backbone: Backbone | None = None,
        warn_official_heads: bool = True,
    ):
        super().__init__()
        if version not in VERSIONS:
            raise MetricError(f"version must be one of {VERSIONS}, got {version!r}")
        self.weights_reason = ""
        self.kmeans_corpus_info: dict | None = None
        if backbone is None:
            if isinstance(backbone_weights, str) and backbone_weights == AUTO:
                backbone_weights, self.weights_reason = resolve_weights(
                    net, AUTO, allow_download=allow_download
                )
            if backbone_weights == "kmeans" and kmeans_corpus is not None:
                kmeans_corpus = as_kmeans_corpus(kmeans_corpus, n=kmeans_patches, seed=seed)
                self.kmeans_corpus_info = {
                    "seed": seed,
                    "patches": int(kmeans_corpus.shape[0]),
                    "size": list(kmeans_corpus.shape[2:]),
                    "digest": corpus_digest(kmeans_corpus),
                }
            backbone = build_backbone(
                net,
                backbone_weights,
                seed=seed,
                tune=tune,
                kmeans_corpus=kmeans_corpus,
                cache_dir=kmeans_cache_dir,
                allow_download=allow_download,
            )
        self.backbone = backbone
        self.net = self.backbone.spec.name
        self.version = version
        self.spatial = spatial
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1))
        self.heads: LinearHeads | None = None
        self.head_source = "none"
        self.heads_warning = ""
        if head_weights is not None:
            self.heads = LinearHeads(self.backbone.spec.channels, use_dropout=use_dropout)
            if head_weights == "official":
                self.load_heads(official_head_path(self.net, version))
                self.head_source = f"official:v{version}"
                if self.backbone.source != "imagenet":
                    self.head_source += " on a non-ImageNet trunk"
                    self.heads_warning = official_heads_warning(self.net, self.backbone.source)
                    if warn_official_heads:
                        warnings.warn(self.heads_warning, OfficialHeadsWarning, stacklevel=2)
            elif head_weights == "random":
                gen = torch.Generator().manual_seed(seed)
                with torch.no_grad():
                    for conv in self.heads.convs:
                        conv.weight.copy_(torch.rand(conv.weight.shape, generator=gen) * 0.1)
                self.head_source = "random"
            else:
                self.load_heads(head_weights)
                self.head_source = f"file:{os.fspath(head_weights)}"
        self.eval()

    # --- heads I/O -------------------------------------------------------------------------------
    def load_heads(self, path: str | os.PathLike) -> None:
        if self.heads is None:
            raise MetricError("this LPIPS has no heads (head_weights=None)")
        self.heads.load_reference_state_dict(load_head_file(path), source=os.fspath(path))

    def save_heads(self, path: str | os.PathLike):
        if self.heads is None:
            raise MetricError("this LPIPS has no heads to save")
        return save_head_file(self.heads, path)

    # --- forward ---------------------------------------------------------------------------------
    def prepare(self, x: torch.Tensor, normalize: bool) -> torch.Tensor:
        if normalize:
            x = 2 * x - 1
        return (x - self.shift) / self.scale if self.version == "0.1" else x

    def features(self, x: torch.Tensor, normalize: bool = False) -> list[torch.Tensor]:
        """Backbone activations at the taps (reuse them across pairs that share an image)."""
        return self.backbone(self.prepare(x, normalize))

    def distance_from_features(
        self,
        feats0: list[torch.Tensor],
        feats1: list[torch.Tensor],
        size: tuple[int, int],
        retPerLayer: bool = False,
    ):
        diffs = squared_diffs(feats0, feats1)
        res = []
        for k, diff in enumerate(diffs):
            layer = (
                self.heads.forward_layer(k, diff) if self.heads is not None else diff.sum(dim=1, keepdim=True)
            )
            res.append(upsample(layer, size) if self.spatial else layer.mean(dim=(2, 3), keepdim=True))
        val = res[0]
        for r in res[1:]:
            val = val + r
        return (val, res) if retPerLayer else val

    def forward(self, x0: torch.Tensor, x1: torch.Tensor, retPerLayer: bool = False, normalize: bool = False):
        check_pair(x0, x1, normalize=normalize)
        f0, f1 = self.features(x0, normalize), self.features(x1, normalize)
        return self.distance_from_features(f0, f1, tuple(x0.shape[2:]), retPerLayer)

    def describe(self) -> dict:
        """What every reported number must state (docs/science.md, "Pitfalls of the reference package");
        plus ``backbone_reason`` when ``auto`` chose the trunk and ``kmeans_corpus`` for a k-means one."""
        out = {
            "metric": "lpips" if self.heads is not None else "deep-unweighted",
            "net": self.net,
            "version": self.version,
            "backbone_weights": self.backbone.source,
            "head_weights": self.head_source,
        }
        if self.heads_warning:
            out["warning"] = self.heads_warning
        if self.weights_reason:
            out["backbone_reason"] = self.weights_reason
        if self.kmeans_corpus_info:
            out["kmeans_corpus"] = dict(self.kmeans_corpus_info)
        return out

    def save_trunk(self, path: str | os.PathLike):
        """The trunk file (``metric.backbones.save_trunk``: the ``features`` state dict, as bundles ship
        it); ``LPIPS(backbone_weights=path)`` and ``--backbone-weights PATH`` load it."""
        return self.backbone.save(path)
