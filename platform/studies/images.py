"""Reading untrusted images (zip imports, restored archives) safely: the format and the pixel count come
from the header, and nothing is decoded before they pass. A 3 KB flat PNG can claim 1024x1024 pixels
(3 MB decoded); the header says so before a single pixel is inflated."""

from __future__ import annotations

import io
import zipfile
import zlib
from contextlib import contextmanager

import numpy as np
from PIL import Image

from core.exceptions import ApplicationError

# What reading a hostile image or zip member may raise besides our own errors.
READ_ERRORS = (
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    IndexError,
    KeyError,
    TypeError,
    zlib.error,
    zipfile.BadZipFile,
    RuntimeError,
    NotImplementedError,
)


def _check(
    name: str, img: Image.Image, *, formats: set[str], max_side: int, max_pixels: int
) -> tuple[str, int, int]:
    if img.format not in formats:
        raise ApplicationError(
            f"{name}: {img.format or 'unknown'} images are not accepted (use {' or '.join(sorted(formats))})",
            {"file": name},
        )
    w, h = img.size
    if w > max_side or h > max_side or w < 8 or h < 8:
        raise ApplicationError(f"{name}: {w}x{h} pixels is outside 8..{max_side} per side", {"file": name})
    if w * h > max_pixels:
        raise ApplicationError(f"{name}: {w}x{h} pixels is more than {max_pixels}", {"file": name})
    return img.format, w, h


@contextmanager
def _reading(name: str):
    """What PIL or zipfile raise on a hostile file becomes a 400 naming the file."""
    try:
        yield
    except ApplicationError:
        raise
    except Image.DecompressionBombError as exc:
        raise ApplicationError(f"{name}: too many pixels (a decompression bomb?)", {"file": name}) from exc
    except READ_ERRORS as exc:
        raise ApplicationError(
            f"{name}: not a readable image ({exc.__class__.__name__})", {"file": name}
        ) from exc


def image_header(
    name: str, stream, *, formats: set[str], max_side: int, max_pixels: int
) -> tuple[str, int, int]:
    """(format, width, height) from the header alone (PIL opens lazily: no pixel data is decoded)."""
    with _reading(name), Image.open(stream) as img:
        return _check(name, img, formats=formats, max_side=max_side, max_pixels=max_pixels)


def decode_image(name: str, data: bytes, *, formats: set[str], max_side: int, max_pixels: int) -> np.ndarray:
    """Decode to uint8 H x W x 3 RGB after checking the header; any damage is a 400 naming the file."""
    with _reading(name), Image.open(io.BytesIO(data)) as img:
        _check(name, img, formats=formats, max_side=max_side, max_pixels=max_pixels)
        return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()
