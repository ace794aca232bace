"""LPIPS and baselines, scoring, BAPPS I/O and training (plain PyTorch; no Django).

>>> import metric
>>> model = metric.LPIPS(net="alex", backbone_weights="random", head_weights="random")
"""

from metric.backbones import (
    BACKBONES,
    Backbone,
    backbone_spec,
    build_backbone,
    corpus_digest,
    kmeans_corpus,
    resolve_weights,
    save_trunk,
)
from metric.errors import MetricError, WeightsUnavailableError
from metric.heads import LinearHeads
from metric.lpips import LPIPS, OfficialHeadsWarning
from metric.train import TrainConfig, TrainResult, train_heads

__all__ = [
    "BACKBONES",
    "LPIPS",
    "Backbone",
    "LinearHeads",
    "MetricError",
    "OfficialHeadsWarning",
    "TrainConfig",
    "TrainResult",
    "WeightsUnavailableError",
    "backbone_spec",
    "build_backbone",
    "corpus_digest",
    "kmeans_corpus",
    "resolve_weights",
    "save_trunk",
    "train_heads",
]
