"""Feature networks other code borrows from the metric.

`cnn_feature_distance` is the feature term the CNN-autoencoder distortions are trained with: the
unweighted LPIPS distance on an AlexNet trunk, seeded random weights by default, or
``PERCEPTLAB_CNN_FEATURE_BACKBONE=imagenet|kmeans|<path>``. The engine never imports the metric:
``distortions.cnn.trainer`` takes this factory as an argument (the platform passes it; ``python -m
distortions train-cnn-pool`` names it by default), and calls it in each training process."""

from __future__ import annotations

import os

import torch

from metric.lpips import LPIPS


def cnn_feature_distance(device: torch.device | str) -> torch.nn.Module:
    """Factory f(device) of the CNN pool's feature-loss network (picklable: a module-level function)."""
    weights = os.environ.get("PERCEPTLAB_CNN_FEATURE_BACKBONE", "random")
    return LPIPS(net="alex", backbone_weights=weights, head_weights=None, seed=0).to(device).eval()
