"""Contact sheet: every registered distortion at 5 severities on one patch, as one PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from distortions import registry
from distortions.rng import item_generator
from distortions.sources import SkimagePhotos

SEVERITIES = (0.0, 0.25, 0.5, 0.75, 1.0)


def default_patch(size: int = 64) -> np.ndarray:
    """A fixed, textured patch of scikit-image's astronaut photo (face and suit edge)."""
    image = SkimagePhotos(["astronaut"]).images[0].image
    return image[60 : 60 + size, 170 : 170 + size].copy()


def contact_sheet(
    path: str | Path,
    *,
    patch: np.ndarray | None = None,
    names: list[str] | None = None,
    scale: int = 2,
    seed: int = 0,
) -> Path:
    patch = default_patch() if patch is None else patch
    names = names or registry.available_names()
    cell = patch.shape[0] * scale
    label_w, pad, header = 170, 4, 22
    cols = 1 + len(SEVERITIES)
    width = label_w + cols * (cell + pad)
    height = header + len(names) * (cell + pad)
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    draw.text((4, 4), "distortion", fill="black", font=font)
    for j, title in enumerate(["input"] + [f"severity {s:g}" for s in SEVERITIES]):
        draw.text((label_w + j * (cell + pad), 4), title, fill="black", font=font)

    def paste(img: np.ndarray, row: int, col: int) -> None:
        tile = Image.fromarray(img).resize((cell, cell), Image.NEAREST)
        sheet.paste(tile, (label_w + col * (cell + pad), header + row * (cell + pad)))

    for i, name in enumerate(names):
        dist = registry.get(name)()
        draw.text(
            (4, header + i * (cell + pad) + cell // 2 - 6), f"{name} ({dist.family})", fill="black", font=font
        )
        paste(patch, i, 0)
        for j, severity in enumerate(SEVERITIES):
            # the same nuisance draw (direction, noise seed) in every column: only severity changes
            params = dist.params_at(severity, item_generator(seed, i, 0)[0])
            paste(dist.apply(patch, params), i, j + 1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path
