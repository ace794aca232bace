"""The space of autoencoders (paper section 2.1; values unpublished, ours documented here).

| knob | values |
|---|---|
| n_layers (encoder stages) | 2..4 |
| skip_layers | any subset of the inner levels (count 0..n_layers-1) |
| force_top_skip | skip at the highest (full-resolution) level: yes/no |
| dropout_layers | decoder levels with dropout (p = 0.5 during training), count 0..2 |
| upsample | transpose, bilinear (+conv), nearest (+conv), pixelshuffle |
| norm | batch, instance, none |
| first_stride | 1 or 2 |
| first_channels | 8, 16, 32 |
| max_channels | 32, 64, 128 |
| corruption | none, pink_noise, white_noise, grayscale, downsample (strength per kind) |
| loss | L1 (weight 1) + feature loss (0..1, see below) + adversarial (0 or 0.01..0.1) |
| disc_layers | 2..4 (when adversarial) |
| lr | log-uniform 2e-4..3e-3 (Adam, betas 0.5/0.999) |

Feature loss: on unweighted deep features of a metric backbone.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import numpy as np

from distortions.errors import DistortionError

UPSAMPLE = ("transpose", "bilinear", "nearest", "pixelshuffle")
NORMS = ("batch", "instance", "none")
CORRUPTIONS = ("none", "pink_noise", "white_noise", "grayscale", "downsample")


@dataclass
class ArchSpec:
    n_layers: int = 3
    skip_layers: list = field(default_factory=list)
    force_top_skip: bool = False
    dropout_layers: list = field(default_factory=list)
    upsample: str = "bilinear"
    norm: str = "batch"
    first_stride: int = 2
    first_channels: int = 16
    max_channels: int = 64
    corruption: str = "none"
    corruption_strength: float = 0.0
    feature_weight: float = 0.0
    adversarial_weight: float = 0.0
    disc_layers: int = 3
    lr: float = 1e-3
    seed: int = 0

    def validate(self) -> ArchSpec:
        problems = []
        if not 2 <= self.n_layers <= 4:
            problems.append("n_layers must be 2..4")
        if any(not isinstance(i, int) or not 1 <= i < self.n_layers for i in self.skip_layers):
            problems.append(f"skip_layers must be inner levels 1..{self.n_layers - 1}")
        if any(not isinstance(i, int) or not 0 <= i < self.n_layers for i in self.dropout_layers):
            problems.append(f"dropout_layers must be levels 0..{self.n_layers - 1}")
        if self.upsample not in UPSAMPLE:
            problems.append(f"upsample must be one of {UPSAMPLE}")
        if self.norm not in NORMS:
            problems.append(f"norm must be one of {NORMS}")
        if self.first_stride not in (1, 2):
            problems.append("first_stride must be 1 or 2")
        if not 4 <= self.first_channels <= self.max_channels <= 512:
            problems.append("need 4 <= first_channels <= max_channels <= 512")
        if self.corruption not in CORRUPTIONS:
            problems.append(f"corruption must be one of {CORRUPTIONS}")
        if not 0.0 <= self.corruption_strength <= 1.0:
            problems.append("corruption_strength must be in [0, 1]")
        if self.feature_weight < 0 or self.adversarial_weight < 0 or not 2 <= self.disc_layers <= 4:
            problems.append("loss weights must be >= 0 and disc_layers 2..4")
        if not 1e-5 <= self.lr <= 1e-1:
            problems.append("lr must be in [1e-5, 1e-1]")
        if problems:
            raise DistortionError("invalid autoencoder spec: " + "; ".join(problems))
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ArchSpec:
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise DistortionError(f"unknown autoencoder spec keys {sorted(unknown)}")
        return cls(**data).validate()

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


def sample_spec(rng: np.random.Generator, *, seed: int) -> ArchSpec:
    n_layers = int(rng.integers(2, 5))
    inner = list(range(1, n_layers))
    n_skips = int(rng.integers(0, len(inner) + 1))
    skip_layers = sorted(int(i) for i in rng.choice(inner, size=n_skips, replace=False)) if n_skips else []
    n_drop = int(rng.integers(0, 3))
    dropout_layers = sorted(int(i) for i in rng.choice(n_layers, size=min(n_drop, n_layers), replace=False))
    first_channels = int(rng.choice([8, 16, 32]))
    max_channels = int(max(first_channels, rng.choice([32, 64, 128])))
    corruption = str(rng.choice(CORRUPTIONS))
    adversarial = bool(rng.random() < 0.3)
    return ArchSpec(
        n_layers=n_layers,
        skip_layers=skip_layers,
        force_top_skip=bool(rng.random() < 0.25),
        dropout_layers=dropout_layers,
        upsample=str(rng.choice(UPSAMPLE)),
        norm=str(rng.choice(NORMS)),
        first_stride=int(rng.choice([1, 2])),
        first_channels=first_channels,
        max_channels=max_channels,
        corruption=corruption,
        corruption_strength=0.0 if corruption == "none" else float(rng.uniform(0.2, 1.0)),
        feature_weight=float(rng.choice([0.0, rng.uniform(0.05, 1.0)])),
        adversarial_weight=float(rng.uniform(0.01, 0.1)) if adversarial else 0.0,
        disc_layers=int(rng.integers(2, 5)),
        lr=float(np.exp(rng.uniform(np.log(2e-4), np.log(3e-3)))),
        seed=int(seed),
    ).validate()


def sample_specs(n: int, seed: int) -> list[ArchSpec]:
    """N architectures from the space; spec i uses SeedSequence(seed, spawn_key=(i,))."""
    out = []
    for i in range(n):
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(i,))))
        out.append(sample_spec(rng, seed=int(rng.integers(0, 2**31 - 1))))
    return out
