"""Image conversion, hashing and PNG I/O. Canonical patches are uint8 H x W x 3 RGB arrays."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

from distortions.errors import DistortionError


def check_image(image: np.ndarray, *, name: str = "image") -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise DistortionError(f"{name} must be a numpy array, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise DistortionError(f"{name} must be H x W x 3 RGB, got shape {image.shape}")
    if image.dtype != np.uint8:
        raise DistortionError(f"{name} must be uint8 in [0, 255], got {image.dtype}")
    if image.shape[0] < 8 or image.shape[1] < 8:
        raise DistortionError(f"{name} is too small ({image.shape[0]}x{image.shape[1]}); need at least 8x8")
    return image


def to_float(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float32) / np.float32(255.0)


def to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)


def pixels_sha256(image: np.ndarray) -> str:
    """sha256 over the shape and the raw uint8 pixels (independent of any file encoding)."""
    digest = hashlib.sha256()
    h, w, c = image.shape
    digest.update(f"{h}x{w}x{c}:".encode())
    digest.update(np.ascontiguousarray(image, dtype=np.uint8).tobytes())
    return digest.hexdigest()


def encode_png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image, mode="RGB").save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()


def load_rgb(path: str | Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()


def write_png(image: np.ndarray, directory: Path) -> tuple[str, str]:
    """Write under a content-addressed name; returns (file name, file sha256)."""
    data = encode_png(image)
    sha = hashlib.sha256(data).hexdigest()
    name = f"{sha}.png"
    path = directory / name
    if not path.exists():
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_bytes(data)
        tmp.replace(path)
    return name, sha
