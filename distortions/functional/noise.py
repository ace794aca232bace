import numpy as np


def _rng(seed: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(seed))


def uniform_white_noise(image: np.ndarray, amplitude: float, seed: int) -> np.ndarray:
    noise = _rng(seed).uniform(-amplitude, amplitude, size=image.shape)
    return np.clip(image + noise, 0.0, 1.0).astype(np.float32)


def gaussian_white_noise(image: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    noise = _rng(seed).normal(0.0, sigma, size=image.shape)
    return np.clip(image + noise, 0.0, 1.0).astype(np.float32)


def spectral_noise(shape: tuple[int, ...], exponent: float, seed: int) -> np.ndarray:
    """Gaussian noise whose power spectrum falls as 1/f**exponent (per channel), unit std.

    exponent 0 = white, 1 = pink, 2 = brown (red), -1 = blue, -2 = violet.
    """
    h, w, c = shape
    white = _rng(seed).normal(size=(c, h, w))
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    f = np.sqrt(fx**2 + fy**2)
    f[0, 0] = 1.0
    amplitude = f ** (-exponent / 2.0)
    amplitude[0, 0] = 0.0  # zero mean
    shaped = np.fft.irfft2(np.fft.rfft2(white) * amplitude, s=(h, w))
    shaped /= shaped.std(axis=(1, 2), keepdims=True) + 1e-12
    return np.moveaxis(shaped, 0, -1)


def colored_noise(image: np.ndarray, sigma: float, exponent: float, seed: int) -> np.ndarray:
    noise = spectral_noise(image.shape, exponent, seed) * sigma
    return np.clip(image + noise, 0.0, 1.0).astype(np.float32)


def checkerboard(image: np.ndarray, amplitude: float, period: int, phase_y: int, phase_x: int) -> np.ndarray:
    """Add a +/-amplitude checkerboard of `period`-pixel cells (the grid artifact of strided
    transposed convolutions)."""
    h, w = image.shape[:2]
    yy = (np.arange(h)[:, None] + phase_y) // period
    xx = (np.arange(w)[None, :] + phase_x) // period
    pattern = np.where((yy + xx) % 2 == 0, amplitude, -amplitude).astype(np.float32)
    return np.clip(image + pattern[..., None], 0.0, 1.0).astype(np.float32)
