"""Reproducible image distortions for perceptual-similarity studies (no Django).

>>> import numpy as np, distortions
>>> blur = distortions.create("gaussian_blur")
>>> params = blur.sample(np.random.default_rng(0))
>>> out = blur.apply(np.zeros((64, 64, 3), np.uint8), params)
"""

from distortions.dataset import StudyBuilder, StudyConfig, build_study, read_manifest
from distortions.errors import DistortionError, RecordMismatchError
from distortions.pipeline import ChainSampler, allowed_pairs, apply_ops, chain_allowed
from distortions.record import distort, reapply
from distortions.registry import FAMILIES, Distortion, create, get, names

__all__ = [
    "FAMILIES",
    "ChainSampler",
    "Distortion",
    "DistortionError",
    "RecordMismatchError",
    "StudyBuilder",
    "StudyConfig",
    "allowed_pairs",
    "apply_ops",
    "build_study",
    "chain_allowed",
    "create",
    "distort",
    "get",
    "names",
    "read_manifest",
    "reapply",
]
