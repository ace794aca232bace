import os
import warnings

import numpy as np
import pytest
import torch

os.environ["PERCEPTLAB_OFFLINE"] = "1"  # tests never download weights
warnings.filterwarnings("ignore", category=UserWarning, module="torchvision")


@pytest.fixture(scope="session")
def real_patches() -> np.ndarray:
    """Real 64x64 photo patches with distortions (from the engine): N x 64 x 64 x 3 uint8."""
    from distortions.dataset import StudyBuilder, StudyConfig

    b = StudyBuilder(
        StudyConfig.from_dict(
            {"kind": "2afc", "seed": 3, "n_items": 8, "sentinels": {"n": 0}, "practice": {"n": 0}}
        )
    )
    items = [b.build_item(i)["_images"] for i in range(8)]
    return np.stack([im[k] for im in items for k in ("ref", "p0", "p1")])


def synthetic_2afc(
    n: int, *, seed: int = 1, observer_seed: int = 7, votes: int = 5, temperature: float = 0.3
):
    """Triplets from the distortion engine; votes from a hidden observer: LPIPS (official alex heads)
    on a random backbone, a logistic choice with the given temperature (in units of std(d0 - d1))."""
    from distortions.dataset import StudyBuilder, StudyConfig
    from metric import LPIPS
    from metric.data import TwoAFCData
    from metric.evaluate import lpips_2afc_distances

    b = StudyBuilder(
        StudyConfig.from_dict(
            {"kind": "2afc", "seed": seed, "n_items": n, "sentinels": {"n": 0}, "practice": {"n": 0}}
        )
    )
    items = [b.build_item(i)["_images"] for i in range(n)]
    data = TwoAFCData(
        *(np.stack([im[k] for im in items]) for k in ("ref", "p0", "p1")), np.zeros(n), ["traditional"] * n
    )
    observer = LPIPS(  # official heads on a random trunk, on purpose: a hidden observer, not LPIPS
        net="alex",
        backbone_weights="random",
        seed=observer_seed,
        head_weights="official",
        warn_official_heads=False,
    )
    d0, d1 = lpips_2afc_distances(observer, data)
    prob = 1.0 / (1.0 + np.exp(-(d0 - d1) / (temperature * np.std(d0 - d1))))
    k = np.random.default_rng(seed).binomial(votes, prob)
    data.p, data.n_votes = k / votes, np.full(n, float(votes))
    return data


@pytest.fixture(scope="session")
def synthetic_data():
    torch.set_num_threads(2)
    return synthetic_2afc(1200)
