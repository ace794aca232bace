"""Backbones from a table: the reference LPIPS taps on torchvision's `.features`.

Weight sources (``weights=``):

- ``"imagenet"``: torchvision's ``weights=`` API (IMAGENET1K_V1), cached under ``torch.hub.get_dir()``.
  Offline (``PERCEPTLAB_OFFLINE=1`` or ``allow_download=False``, or a failed download) it raises
  ``WeightsUnavailableError`` naming the file and where to put it.
- a path to a local ``.pth`` file: a torchvision state dict of the whole model or of ``features``.
- ``"random"``: torchvision's default initialisation under ``torch.manual_seed(seed)`` (the paper's
  "random Gaussian" row, the reference's ``pnet_rand=True``).
- ``"auto"``: ImageNet when its weights are present or can be fetched, else kmeans (``resolve_weights``).
- ``"kmeans"``: data-dependent initialisation by layer-wise k-means on patches of a given corpus
  (Kraehenbuehl et al. 2016; the paper's "K-means" row), seeded and cached.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchvision
from torch import nn

from metric.errors import MetricError, WeightsUnavailableError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    torchvision_name: str
    weights_enum: str
    slices: tuple[tuple[int, int], ...]  # [start, end) ranges in `.features`
    taps: tuple[str, ...]
    channels: tuple[int, ...]


BACKBONES: dict[str, BackboneSpec] = {
    "alex": BackboneSpec(
        "alex",
        "alexnet",
        "AlexNet_Weights",
        ((0, 2), (2, 5), (5, 8), (8, 10), (10, 12)),
        ("relu1", "relu2", "relu3", "relu4", "relu5"),
        (64, 192, 384, 256, 256),
    ),
    "vgg": BackboneSpec(
        "vgg",
        "vgg16",
        "VGG16_Weights",
        ((0, 4), (4, 9), (9, 16), (16, 23), (23, 30)),
        ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3"),
        (64, 128, 256, 512, 512),
    ),
    "squeeze": BackboneSpec(
        "squeeze",
        "squeezenet1_1",
        "SqueezeNet1_1_Weights",
        ((0, 2), (2, 5), (5, 8), (8, 10), (10, 11), (11, 12), (12, 13)),
        ("conv1", "fire3", "fire5", "fire6", "fire7", "fire8", "fire9"),
        (64, 128, 256, 384, 384, 512, 512),
    ),
}
ALIASES = {"alexnet": "alex", "vgg16": "vgg", "squeezenet1_1": "squeeze", "squeezenet": "squeeze"}
WEIGHT_SOURCES = ("imagenet", "random", "kmeans")
AUTO = "auto"  # ImageNet when its weights are present or can be fetched, k-means otherwise (resolve_weights)
KMEANS_CORPUS_SIZE = 512  # patches drawn for a k-means trunk unless told otherwise


def backbone_spec(net: str) -> BackboneSpec:
    key = ALIASES.get(net, net)
    if key not in BACKBONES:
        raise MetricError(
            f"unknown net {net!r}; choose one of {sorted(BACKBONES)} (aliases {sorted(ALIASES)})"
        )
    return BACKBONES[key]


def offline() -> bool:
    return os.environ.get("PERCEPTLAB_OFFLINE", "").lower() in {"1", "true", "yes"}


class Backbone(nn.Module):
    """The layers of `.features` up to the last tap; forward returns the tapped activations."""

    def __init__(self, spec: BackboneSpec, features: nn.Sequential, *, tune: bool = False, source: str = ""):
        super().__init__()
        self.spec = spec
        self.features = features[: spec.slices[-1][1]]
        self.tune = tune
        self.source = source
        self._ends = {end - 1: k for k, (_, end) in enumerate(spec.slices)}
        for module in self.features:
            if isinstance(module, nn.ReLU):
                module.inplace = False  # tapped tensors must not be overwritten
        self.requires_grad_(tune)
        self.train(False)

    def train(self, mode: bool = True):
        """Frozen backbones stay in eval mode whatever the caller asks (unless tuning)."""
        return super().train(mode and self.tune)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        size = tuple(x.shape[2:])
        try:
            for i, module in enumerate(self.features):
                x = module(x)
                if i in self._ends:
                    outs.append(x)
        except RuntimeError as exc:
            if "too small" not in str(exc) and "can't be greater" not in str(exc):
                raise
            raise MetricError(
                f"inputs of {size[0]}x{size[1]} pixels are too small for the {self.spec.name} trunk "
                f"({self.spec.torchvision_name}): {exc}"
            ) from exc
        return outs

    def save(self, path: str | os.PathLike) -> Path:
        """The trunk file: the ``features`` state dict (``{"0.weight": tensor, ...}``), the format model
        bundles ship, which ``backbone_weights=path`` (and ``--backbone-weights PATH``) loads strictly and
        the reference lpips package takes into its slices (docs/metric.md, "Downloaded models")."""
        return save_trunk(self, path)


def _torchvision_builder(spec: BackboneSpec):
    return getattr(torchvision.models, spec.torchvision_name)


def imagenet_weights_file(spec: BackboneSpec) -> tuple[Path, str]:
    enum = getattr(torchvision.models, spec.weights_enum).IMAGENET1K_V1
    url = enum.url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url), url


def _features_random(spec: BackboneSpec, seed: int) -> nn.Sequential:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _torchvision_builder(spec)(weights=None).features


def _features_imagenet(spec: BackboneSpec, allow_download: bool) -> nn.Sequential:
    path, url = imagenet_weights_file(spec)
    hint = (
        f"ImageNet weights for {spec.torchvision_name} are not available: expected the file {path} "
        f"(downloaded from {url} by torchvision's weights= API). Copy that file there (or set TORCH_HOME), "
        "pass a local file path as backbone_weights, or use backbone_weights='random' or 'kmeans'."
    )
    if not path.exists() and (offline() or not allow_download):
        raise WeightsUnavailableError(hint)
    enum = getattr(torchvision.models, spec.weights_enum).IMAGENET1K_V1
    try:
        return _torchvision_builder(spec)(weights=enum, progress=True).features
    except (OSError, RuntimeError) as exc:  # URLError is an OSError
        raise WeightsUnavailableError(f"{hint} (download failed: {exc})") from exc


def resolve_weights(
    net: str, weights: str | os.PathLike = AUTO, *, allow_download: bool = True
) -> tuple[str, str]:
    """The weight source that will run for ``weights``, and why, in words.

    ``"auto"`` is ImageNet when torchvision's weights file is present, or can be fetched now (online and
    ``allow_download``; a failed fetch counts as unavailable), and ``"kmeans"`` otherwise. Any other value
    passes through unchanged with an empty reason."""
    if os.fspath(weights) != AUTO:
        return os.fspath(weights), ""
    spec = backbone_spec(net)
    path, url = imagenet_weights_file(spec)
    # The reason travels (model cards, the dashboard): it names the file, never the server's directories.
    cache = f"the ImageNet weights file {path.name} (torch's hub cache)"
    logger.info("auto backbone for %s: looking for %s", spec.name, path)
    if path.exists():
        return "imagenet", f"auto: {cache} is present"
    if offline() or not allow_download:
        why = "PERCEPTLAB_OFFLINE is set" if offline() else "downloads are not allowed here"
        return "kmeans", f"auto: {cache} is absent and {why}, so a k-means trunk is used"
    try:
        _features_imagenet(spec, allow_download=True)
    except WeightsUnavailableError as exc:
        logger.warning("auto backbone for %s: %s", spec.name, exc)
        return "kmeans", f"auto: ImageNet weights could not be fetched from {url}, so a k-means trunk is used"
    return "imagenet", f"auto: {cache} was fetched"


def kmeans_corpus(*images: np.ndarray, n: int = KMEANS_CORPUS_SIZE, seed: int = 0) -> torch.Tensor:
    """A seeded sample of ``n`` patches for a k-means trunk, from one or more N x H x W x 3 uint8 arrays
    (e.g. a 2AFC set's ref, p0 and p1), as an n x 3 x H x W float tensor in [-1, 1]. The same arrays and
    seed always give the same corpus (so the same trunk, and the same cache entry)."""
    arrays = [a for a in images if a is not None and len(a)]
    if not arrays:
        raise MetricError("a k-means corpus needs at least one image")
    shapes = {tuple(a.shape[1:]) for a in arrays}
    if len(shapes) != 1 or next(iter(shapes))[-1] != 3 or any(a.dtype != np.uint8 for a in arrays):
        raise MetricError(
            f"k-means corpus images must be N x H x W x 3 uint8 of one size, got {sorted(shapes)}"
        )
    pool = np.concatenate(arrays)
    pick = np.sort(np.random.default_rng(seed).permutation(len(pool))[: max(1, int(n))])
    return torch.from_numpy(pool[pick]).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0).contiguous()


def corpus_digest(corpus: torch.Tensor) -> str:
    """The k-means corpus's identity (16 hex digits of SHA-256 over its float32 values): the trunk's
    cache key, its ``source`` (``kmeans:<seed>:<digest>``) and what a trained model records."""
    return hashlib.sha256(corpus.detach().float().cpu().contiguous().numpy().tobytes()).hexdigest()[:16]


def as_kmeans_corpus(corpus, *, n: int = KMEANS_CORPUS_SIZE, seed: int = 0) -> torch.Tensor | None:
    """``kmeans_corpus=`` as given: None, an N x 3 x H x W tensor in [-1, 1] (used as is), or uint8
    N x H x W x 3 numpy arrays (one, or a list/tuple of them), drawn with
    ``kmeans_corpus(..., n=n, seed=seed)``."""
    if corpus is None or torch.is_tensor(corpus):
        return corpus
    arrays = list(corpus) if isinstance(corpus, list | tuple) else [corpus]
    if not all(isinstance(a, np.ndarray) for a in arrays):
        raise MetricError(
            "kmeans_corpus must be an N x 3 x H x W tensor in [-1, 1] or uint8 N x H x W x 3 numpy arrays"
        )
    return kmeans_corpus(*arrays, n=n, seed=seed)


def save_trunk(backbone: Backbone, path: str | os.PathLike) -> Path:
    """Write ``backbone``'s ``features`` state dict as a trunk file (see ``Backbone.save``), atomically.
    Where the trunk came from is not in the file: ``TrainResult.save`` records it in config.json."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in backbone.features.state_dict().items()}
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(state, tmp)
    tmp.replace(path)
    return path


def _load_state(path: Path) -> tuple[dict, str]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: pickle, zip and torch errors alike
        raise MetricError(
            f"{path} is not a readable PyTorch weights file ({type(exc).__name__}: {exc})"
        ) from exc
    origin = ""
    if isinstance(state, dict) and "state_dict" in state:
        origin = state.get("source", "") if isinstance(state.get("source"), str) else ""
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and torch.is_tensor(v) for k, v in state.items()
    ):
        raise MetricError(f"{path} does not hold a state dict")
    return state, origin


def _features_from_file(spec: BackboneSpec, path: Path) -> nn.Sequential:
    features, _ = _features_and_origin(spec, path)
    return features


def _features_and_origin(spec: BackboneSpec, path: Path) -> tuple[nn.Sequential, str]:
    if not path.is_file():
        raise WeightsUnavailableError(
            f"backbone weights file not found: {path}. "
            "Pass an existing .pth file, 'auto', 'imagenet', 'random' or 'kmeans'."
        )
    state, origin = _load_state(path)
    features = _torchvision_builder(spec)(weights=None).features
    feats = {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")} or state
    wanted = features.state_dict()
    missing = sorted(set(wanted) - set(feats))
    if missing:
        raise MetricError(f"{path} is not a {spec.torchvision_name} state dict: missing {missing[:6]}")
    shapes = [k for k in wanted if tuple(feats[k].shape) != tuple(wanted[k].shape)]
    if shapes:
        raise MetricError(
            f"{path} is not a {spec.torchvision_name} state dict: {shapes[0]} has shape "
            f"{tuple(feats[shapes[0]].shape)}, expected {tuple(wanted[shapes[0]].shape)}"
        )
    features.load_state_dict({k: feats[k] for k in wanted}, strict=True)
    return features, origin


def build_backbone(
    net: str = "alex",
    weights: str | os.PathLike = "imagenet",
    *,
    seed: int = 0,
    tune: bool = False,
    kmeans_corpus: torch.Tensor | None = None,
    cache_dir: str | os.PathLike | None = None,
    allow_download: bool = True,
) -> Backbone:
    spec = backbone_spec(net)
    if isinstance(weights, str) and weights == AUTO:
        weights, why = resolve_weights(net, weights, allow_download=allow_download)
        logger.info("backbone %s: %s", spec.name, why)
    if isinstance(weights, str) and weights in WEIGHT_SOURCES:
        if weights == "random":
            features, source = _features_random(spec, seed), f"random:{seed}"
        elif weights == "imagenet":
            features, source = _features_imagenet(spec, allow_download), "imagenet"
        else:
            if kmeans_corpus is None:
                raise MetricError(
                    "backbone_weights='kmeans' needs kmeans_corpus: an N x 3 x H x W tensor in [-1, 1] "
                    "or uint8 N x H x W x 3 images (metric.backbones.kmeans_corpus draws one from your "
                    "images), or pass the trunk file a k-means model shipped with (trunk.pth) as "
                    "backbone_weights"
                )
            corpus = as_kmeans_corpus(kmeans_corpus, seed=seed)
            features, source = kmeans_features(spec, corpus, seed=seed, cache_dir=cache_dir)
    else:
        path = Path(weights)
        features, origin = _features_and_origin(spec, path)
        source = f"file:{path.name}" + (f" ({origin})" if origin else "")
    return Backbone(spec, features, tune=tune, source=source)


# --- k-means data-dependent initialisation ---------------------------------------------------------
def _conv_layers(features: nn.Sequential) -> list[nn.Conv2d]:
    return [m for m in features.modules() if isinstance(m, nn.Conv2d)]


def _spherical_kmeans(x: torch.Tensor, k: int, gen: torch.Generator, iters: int = 15) -> torch.Tensor:
    """k unit-norm centroids of the rows of x (rows already unit-norm)."""
    n = x.shape[0]
    centroids = x[torch.randperm(n, generator=gen)[:k]].clone()
    if centroids.shape[0] < k:  # fewer samples than clusters: pad with random directions
        extra = torch.randn(k - centroids.shape[0], x.shape[1], generator=gen)
        centroids = torch.cat([centroids, extra / extra.norm(dim=1, keepdim=True)])
    for _ in range(iters):
        assign = (x @ centroids.T).argmax(dim=1)
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)
        norms = sums.norm(dim=1, keepdim=True)
        empty = norms.squeeze(1) < 1e-8
        sums[empty] = x[torch.randint(0, n, (int(empty.sum()),), generator=gen)]
        centroids = sums / sums.norm(dim=1, keepdim=True).clamp_min(1e-8)
    return centroids


@torch.no_grad()
def kmeans_init_(
    features: nn.Sequential, corpus: torch.Tensor, *, seed: int = 0, max_patches: int = 20000
) -> None:
    """Layer by layer: filters = spherical k-means centroids of whitened-by-norm input patches, then
    each output channel is scaled and biased to zero mean, unit variance over the corpus."""
    gen = torch.Generator().manual_seed(seed)
    convs = _conv_layers(features)
    for conv in convs:
        captured: list[torch.Tensor] = []
        handle = conv.register_forward_hook(lambda m, inp, out, store=captured: store.append(inp[0]))
        try:
            features(corpus)
        finally:
            handle.remove()
        inp = captured[0]
        patches = nn.functional.unfold(
            inp, conv.kernel_size, dilation=conv.dilation, padding=conv.padding, stride=conv.stride
        )
        patches = patches.transpose(1, 2).reshape(-1, patches.shape[1])
        if patches.shape[0] > max_patches:
            patches = patches[torch.randperm(patches.shape[0], generator=gen)[:max_patches]]
        patches = patches - patches.mean(dim=1, keepdim=True)
        norms = patches.norm(dim=1, keepdim=True)
        patches = patches[norms.squeeze(1) > 1e-6] / norms[norms.squeeze(1) > 1e-6]
        centroids = _spherical_kmeans(patches, conv.out_channels, gen)
        conv.weight.copy_(centroids.reshape_as(conv.weight))
        if conv.bias is not None:
            conv.bias.zero_()
        out = nn.functional.conv2d(inp, conv.weight, None, conv.stride, conv.padding, conv.dilation)
        mean, std = out.mean(dim=(0, 2, 3)), out.std(dim=(0, 2, 3)).clamp_min(1e-6)
        conv.weight.div_(std[:, None, None, None])
        if conv.bias is not None:
            conv.bias.copy_(-mean / std)


def kmeans_features(
    spec: BackboneSpec, corpus: torch.Tensor, *, seed: int = 0, cache_dir: str | os.PathLike | None = None
) -> tuple[nn.Sequential, str]:
    if corpus.ndim != 4 or corpus.shape[1] != 3 or corpus.shape[0] < 1:
        raise MetricError(f"kmeans_corpus must be N x 3 x H x W with N >= 1, got {tuple(corpus.shape)}")
    corpus = corpus.detach().float().cpu().contiguous()
    if not torch.isfinite(corpus).all():
        raise MetricError("kmeans_corpus holds NaN or infinite values")
    digest = corpus_digest(corpus)
    source = f"kmeans:{seed}:{digest}"
    cache = Path(cache_dir or Path.home() / ".cache" / "perceptlab" / "kmeans")
    path = cache / f"{spec.name}-seed{seed}-{digest}.pth"
    features = _torchvision_builder(spec)(weights=None).features[: spec.slices[-1][1]]
    if path.exists():
        features.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
        return features, source
    logger.info("k-means init of %s on %d patches (seed %d)", spec.torchvision_name, corpus.shape[0], seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            Backbone(spec, features)(corpus[:1])  # a clear error for patches too small for the net
        except MetricError as exc:
            raise MetricError(f"k-means corpus: {exc}") from exc
        kmeans_init_(features, corpus, seed=seed)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(features.state_dict(), tmp)
    tmp.replace(path)
    return features, source
