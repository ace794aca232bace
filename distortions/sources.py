"""Where reference patches come from: scikit-image's bundled photographs (the embedded default), a
folder of the user's images, or an explicit list of files.

Sampling is deterministic given the item's Generator, can skip near-flat patches, and returns the
source id and crop box with every patch.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from distortions.errors import DistortionError
from distortions.imageio import load_rgb

# Photographs that ship inside the scikit-image wheel (no download needed).
SKIMAGE_PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "camera",
    "moon",
    "grass",
    "gravel",
    "brick",
    "clock",
    "coins",
)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".ppm", ".bmp", ".tif", ".tiff", ".webp"}


@dataclass
class SourceImage:
    source_id: str
    image: np.ndarray  # uint8 H x W x 3
    sha256: str


def _as_rgb(image: np.ndarray) -> np.ndarray:
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    if image.shape[2] == 4:
        image = image[..., :3]
    return np.ascontiguousarray(image, dtype=np.uint8)


def _sha(image: np.ndarray) -> str:
    return hashlib.sha256(image.tobytes()).hexdigest()


class PatchSource:
    kind: str = ""

    def __init__(self) -> None:
        self._images: list[SourceImage] | None = None

    def to_dict(self) -> dict:
        raise NotImplementedError

    def _load(self) -> list[SourceImage]:
        raise NotImplementedError

    @property
    def images(self) -> list[SourceImage]:
        if self._images is None:
            self._images = self._load()
            if not self._images:
                raise DistortionError(f"patch source {self.to_dict()} holds no images")
        return self._images

    def sample_patch(
        self,
        rng: np.random.Generator,
        *,
        size: int = 64,
        skip_flat: bool = True,
        flat_threshold: float = 0.02,
        max_tries: int = 50,
    ) -> tuple[np.ndarray, dict]:
        """A size x size crop; with skip_flat, crops whose luminance std (in [0,1]) is below the
        threshold are redrawn (up to max_tries, then the last one is kept and marked)."""
        candidates = [im for im in self.images if im.image.shape[0] >= size and im.image.shape[1] >= size]
        if not candidates:
            raise DistortionError(f"no source image is at least {size}x{size}")
        tries = 0
        while tries < max_tries:
            tries += 1
            src = candidates[int(rng.integers(len(candidates)))]
            h, w = src.image.shape[:2]
            y, x = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
            patch = src.image[y : y + size, x : x + size].copy()
            std = float(patch.mean(axis=2).std() / 255.0)
            if not skip_flat or std >= flat_threshold:
                break
        meta = {
            "source": src.source_id,
            "source_sha256": src.sha256,
            "box": [y, x, size, size],
            "luminance_std": round(std, 6),
            "tries": tries,
        }
        if skip_flat and std < flat_threshold:
            meta["flat"] = True
        return patch, meta


class SkimagePhotos(PatchSource):
    kind = "skimage"

    def __init__(self, names: list[str] | None = None) -> None:
        super().__init__()
        self.names = list(names or SKIMAGE_PHOTOS)
        unknown = set(self.names) - set(SKIMAGE_PHOTOS)
        if unknown:
            raise DistortionError(
                f"unknown scikit-image photos {sorted(unknown)}; bundled: {list(SKIMAGE_PHOTOS)}"
            )

    def to_dict(self) -> dict:
        return {"type": self.kind, "names": self.names}

    def _load(self) -> list[SourceImage]:
        from skimage import data

        out = []
        for name in self.names:
            image = _as_rgb(getattr(data, name)())
            out.append(SourceImage(f"skimage:{name}", image, _sha(image)))
        return out


class FilesSource(PatchSource):
    kind = "files"

    def __init__(self, paths: list[str]) -> None:
        super().__init__()
        if not paths:
            raise DistortionError("a files source needs at least one path")
        self.paths = [str(p) for p in paths]

    def to_dict(self) -> dict:
        return {"type": self.kind, "paths": self.paths}

    def _load(self) -> list[SourceImage]:
        out = []
        for p in self.paths:
            path = Path(p)
            if not path.is_file():
                raise DistortionError(f"image file not found: {path}")
            try:
                image = load_rgb(path)
            except Exception as exc:  # PIL raises many types for bad files
                raise DistortionError(f"cannot read image {path}: {exc}") from exc
            out.append(SourceImage(f"file:{path.name}", image, _sha(image)))
        return out


class FolderSource(FilesSource):
    kind = "folder"

    def __init__(self, path: str) -> None:
        folder = Path(path)
        if not folder.is_dir():
            raise DistortionError(f"image folder not found: {folder}")
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DistortionError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {folder}")
        super().__init__([str(p) for p in files])
        self.folder = str(folder)

    def to_dict(self) -> dict:
        return {"type": self.kind, "path": self.folder}


def source_from_dict(data: dict | None) -> PatchSource:
    data = data or {"type": "skimage"}
    kind = data.get("type")
    args = {k: v for k, v in data.items() if k != "type"}
    try:
        if kind == "skimage":
            return SkimagePhotos(**args)
        if kind == "folder":
            return FolderSource(**args)
        if kind == "files":
            return FilesSource(**args)
    except TypeError as exc:
        raise DistortionError(f"bad source spec {data!r}: {exc}") from exc
    raise DistortionError(f"unknown source type {kind!r}; use skimage, folder or files")
