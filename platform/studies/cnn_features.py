"""The deep-feature distance the platform trains its CNN-autoencoder pool with (no Django imports:
the pool's training processes unpickle it by name).

``distortions`` never imports ``metric``; ``studies.services.cnn_pool_train`` hands this factory to
``distortions.cnn.trainer.train_pool``, so the pool's feature term is the unweighted LPIPS distance on
an AlexNet trunk: seeded random weights by default, or
``PERCEPTLAB_CNN_FEATURE_BACKBONE=imagenet|kmeans|<path>``.
"""

from __future__ import annotations

import os

import torch

from metric import LPIPS


def lpips_alex(device: torch.device) -> torch.nn.Module:
    weights = os.environ.get("PERCEPTLAB_CNN_FEATURE_BACKBONE", "random")
    return LPIPS(net="alex", backbone_weights=weights, head_weights=None, seed=0).to(device).eval()
