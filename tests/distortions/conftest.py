import numpy as np
import pytest

from distortions.sources import SkimagePhotos


@pytest.fixture(scope="session")
def patches() -> list[np.ndarray]:
    """Eight textured 64x64 patches from real photographs, fixed crops."""
    src = SkimagePhotos(["astronaut", "chelsea", "coffee", "rocket"])
    rng = np.random.default_rng(123)
    out = []
    while len(out) < 8:
        patch, meta = src.sample_patch(rng, size=64, skip_flat=True, flat_threshold=0.05)
        out.append(patch)
    return out


@pytest.fixture(scope="session")
def patch(patches) -> np.ndarray:
    return patches[0]
