import warnings

import numpy as np
from skimage import color


def _lab2rgb(lab: np.ndarray) -> np.ndarray:
    # Shifted Lab values can leave the sRGB gamut; clipping them is the intended behaviour.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return np.clip(color.lab2rgb(lab), 0.0, 1.0).astype(np.float32)


def lightness_shift(image: np.ndarray, delta_l: float) -> np.ndarray:
    """Add `delta_l` to CIELAB L* (0..100)."""
    lab = color.rgb2lab(image)
    lab[..., 0] = np.clip(lab[..., 0] + delta_l, 0.0, 100.0)
    return _lab2rgb(lab)


def color_shift(image: np.ndarray, delta_a: float, delta_b: float) -> np.ndarray:
    """Add (delta_a, delta_b) to CIELAB a*, b*: a global colour cast."""
    lab = color.rgb2lab(image)
    lab[..., 1] += delta_a
    lab[..., 2] += delta_b
    return _lab2rgb(lab)


def contrast(image: np.ndarray, factor: float) -> np.ndarray:
    """Scale deviations from the mean grey level by `factor` (<1 flattens, >1 stretches)."""
    mean = image.mean(dtype=np.float64)
    return np.clip(mean + (image - mean) * factor, 0.0, 1.0).astype(np.float32)


def saturation(image: np.ndarray, factor: float) -> np.ndarray:
    """Scale HSV saturation by `factor` (0 gives grey)."""
    hsv = color.rgb2hsv(image)
    hsv[..., 1] = np.clip(hsv[..., 1] * factor, 0.0, 1.0)
    return np.clip(color.hsv2rgb(hsv), 0.0, 1.0).astype(np.float32)
