import io

import numpy as np
from PIL import Image

from distortions.imageio import to_float, to_uint8


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """Round trip through Pillow's libjpeg at `quality` (4:2:0 chroma subsampling, baseline)."""
    buffer = io.BytesIO()
    Image.fromarray(to_uint8(image), mode="RGB").save(
        buffer, format="JPEG", quality=int(quality), subsampling=2
    )
    buffer.seek(0)
    with Image.open(buffer) as img:
        return to_float(np.asarray(img.convert("RGB")))
