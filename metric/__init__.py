"""LPIPS and baselines, scoring, BAPPS I/O and training (plain PyTorch; no Django).

>>> import metric
>>> model = metric.LPIPS(net="alex", backbone_weights="random", head_weights="random")
"""

import importlib

# The torch-backed names load on first use (PEP 562), so that `metric.sampling` (numpy and scipy only) can be
# imported by processes that never load torch: the platform's web processes (judgments.pool and
# judgments.stopping call it on the answer and start paths).
_LAZY = {
    **dict.fromkeys(
        (
            "BACKBONES",
            "Backbone",
            "backbone_spec",
            "build_backbone",
            "corpus_digest",
            "kmeans_corpus",
            "resolve_weights",
            "save_trunk",
        ),
        "metric.backbones",
    ),
    "MetricError": "metric.errors",
    "WeightsUnavailableError": "metric.errors",
    "LinearHeads": "metric.heads",
    "LPIPS": "metric.lpips",
    "OfficialHeadsWarning": "metric.lpips",
    "TrainConfig": "metric.train",
    "TrainResult": "metric.train",
    "train_heads": "metric.train",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'metric' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = sorted(_LAZY)
