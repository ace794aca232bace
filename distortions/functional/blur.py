import cv2
import numpy as np
from scipy import ndimage


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    return ndimage.gaussian_filter(image, sigma=(sigma, sigma, 0), mode="reflect").astype(np.float32)


def bilateral(image: np.ndarray, sigma_spatial: float, sigma_color: float) -> np.ndarray:
    """Edge-preserving bilateral smoothing (OpenCV; colour distance is the L1 sum over channels,
    window diameter 2*ceil(2*sigma_spatial)+1, reflected borders)."""
    diameter = int(2 * np.ceil(2 * sigma_spatial) + 1)
    out = cv2.bilateralFilter(
        np.ascontiguousarray(image, dtype=np.float32),
        d=diameter,
        sigmaColor=float(sigma_color),
        sigmaSpace=float(sigma_spatial),
        borderType=cv2.BORDER_REFLECT,
    )
    return np.clip(out, 0.0, 1.0).astype(np.float32)
