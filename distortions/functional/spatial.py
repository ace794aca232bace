import numpy as np
from scipy import ndimage
from skimage import transform


def _shift_channels(image: np.ndarray, dy: float, dx: float) -> np.ndarray:
    return ndimage.shift(image, (dy, dx, 0), order=1, mode="reflect")


def shift(image: np.ndarray, dy: float, dx: float) -> np.ndarray:
    """Sub-pixel translation (bilinear, reflected borders)."""
    return np.clip(_shift_channels(image, dy, dx), 0.0, 1.0).astype(np.float32)


def _warp(image: np.ndarray, tform: transform.ProjectiveTransform) -> np.ndarray:
    out = transform.warp(image, tform.inverse, order=1, mode="reflect", preserve_range=True)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def _about_centre(image: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    c = np.array([[1, 0, (w - 1) / 2], [0, 1, (h - 1) / 2], [0, 0, 1]])
    return c @ matrix @ np.linalg.inv(c)


def affine_warp(
    image: np.ndarray, rotation_deg: float, shear_deg: float, scale_x: float, scale_y: float
) -> np.ndarray:
    """Rotation, shear and anisotropic scale about the patch centre."""
    t = transform.AffineTransform(
        scale=(scale_x, scale_y), rotation=np.deg2rad(rotation_deg), shear=np.deg2rad(shear_deg)
    )
    return _warp(image, transform.ProjectiveTransform(_about_centre(image, t.params)))


def homography(image: np.ndarray, corner_offsets: list[float]) -> np.ndarray:
    """Move the four corners by (dx, dy) offsets in pixels (8 numbers, clockwise from top-left)."""
    h, w = image.shape[:2]
    src = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], dtype=np.float64)
    dst = src + np.asarray(corner_offsets, dtype=np.float64).reshape(4, 2)
    tform = transform.ProjectiveTransform.from_estimate(src, dst)
    return _warp(image, tform)


def displacement_field(
    shape: tuple[int, int], grid: int, magnitude: float, seed: int, order: int
) -> tuple[np.ndarray, np.ndarray]:
    """A smooth random field: control displacements on a grid x grid lattice (max |d| = magnitude
    pixels), interpolated to full size with spline `order` (1 = linear, 3 = cubic)."""
    h, w = shape
    rng = np.random.Generator(np.random.PCG64(seed))
    control = rng.uniform(-1.0, 1.0, size=(2, grid, grid))
    control *= magnitude / max(np.abs(control).max(), 1e-12)
    zoom = (h / grid, w / grid)
    dy = ndimage.zoom(control[0], zoom, order=order, mode="nearest", grid_mode=True)
    dx = ndimage.zoom(control[1], zoom, order=order, mode="nearest", grid_mode=True)
    return dy[:h, :w], dx[:h, :w]


def field_warp(image: np.ndarray, grid: int, magnitude: float, seed: int, order: int) -> np.ndarray:
    h, w = image.shape[:2]
    dy, dx = displacement_field((h, w), grid, magnitude, seed, order)
    yy, xx = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    coords = [yy + dy, xx + dx]
    channels = [ndimage.map_coordinates(image[..., c], coords, order=1, mode="reflect") for c in range(3)]
    return np.clip(np.stack(channels, axis=-1), 0.0, 1.0).astype(np.float32)


def ghosting(image: np.ndarray, alpha: float, dy: float, dx: float) -> np.ndarray:
    """Blend a displaced copy (an echo) over the image with weight `alpha`."""
    ghost = _shift_channels(image, dy, dx)
    return np.clip((1.0 - alpha) * image + alpha * ghost, 0.0, 1.0).astype(np.float32)


def chromatic_aberration(image: np.ndarray, dy: float, dx: float) -> np.ndarray:
    """Lateral colour fringing: red moves by +(dy, dx)/2, blue by -(dy, dx)/2, green stays."""
    out = image.copy()
    out[..., 0] = ndimage.shift(image[..., 0], (dy / 2, dx / 2), order=1, mode="reflect")
    out[..., 2] = ndimage.shift(image[..., 2], (-dy / 2, -dx / 2), order=1, mode="reflect")
    return np.clip(out, 0.0, 1.0).astype(np.float32)
