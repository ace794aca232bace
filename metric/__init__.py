"""LPIPS and baselines, scoring, BAPPS I/O and training (plain PyTorch; no Django).

>>> import metric
>>> model = metric.LPIPS(net="alex", backbone_weights="random")
"""

from metric.backbones import BACKBONES, Backbone, backbone_spec, build_backbone
from metric.errors import MetricError, WeightsUnavailableError
from metric.heads import LinearHeads
from metric.lpips import LPIPS

__all__ = [
    "BACKBONES",
    "LPIPS",
    "Backbone",
    "LinearHeads",
    "MetricError",
    "WeightsUnavailableError",
    "backbone_spec",
    "build_backbone",
]
