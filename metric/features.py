"""Feature networks other code borrows from the metric.

`cnn_feature_distance` is the feature term the CNN-autoencoder distortions are trained with: the
unweighted LPIPS distance on an AlexNet trunk, seeded random weights by default, or
``PERCEPTLAB_CNN_FEATURE_BACKBONE=auto|imagenet|kmeans|<path>``. A k-means trunk here (asked for, or what
``auto`` chose) is initialised on ``photo_patches()``, seeded 64x64 crops of scikit-image's bundled photos.
The engine never imports the metric: ``distortions.cnn.trainer`` takes this factory as an argument (the
platform passes it; ``python -m distortions train-cnn-pool`` names it by default), and calls it in each
training process."""

from __future__ import annotations

import os

import numpy as np
import torch

from metric.backbones import KMEANS_CORPUS_SIZE, resolve_weights
from metric.lpips import LPIPS

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")  # bundled with scikit-image (no download)


def photo_patches(n: int = KMEANS_CORPUS_SIZE, *, size: int = 64, seed: int = 0) -> np.ndarray:
    """n seeded size x size crops (uint8 N x H x W x 3) of scikit-image's bundled photos, taken in turn."""
    import skimage.data

    photos = [getattr(skimage.data, name)() for name in PHOTOS]
    rng = np.random.default_rng(seed)
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        img = photos[i % len(photos)]
        y, x = rng.integers(0, img.shape[0] - size + 1), rng.integers(0, img.shape[1] - size + 1)
        out[i] = img[y : y + size, x : x + size, :3]
    return out


def cnn_feature_distance(device: torch.device | str) -> torch.nn.Module:
    """Factory f(device) of the CNN pool's feature-loss network (picklable: a module-level function)."""
    weights = os.environ.get("PERCEPTLAB_CNN_FEATURE_BACKBONE", "random")
    weights, reason = resolve_weights("alex", weights)
    corpus = photo_patches() if weights == "kmeans" else None
    model = LPIPS(net="alex", backbone_weights=weights, head_weights=None, seed=0, kmeans_corpus=corpus)
    if reason:
        model.weights_reason = reason
    if model.kmeans_corpus_info is not None:
        model.kmeans_corpus_info["from"] = "metric.features.photo_patches (scikit-image photos)"
    return model.to(device).eval()
