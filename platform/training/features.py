"""The feature cache: per item and backbone, the sufficient statistics of a frozen trunk (metric issue 7),
computed once. With them, any set of lin heads scores an item with one dot product, so retraining and
re-evaluating never run the backbone again for items already seen.

2AFC items store two rows, stats(ref, p0) and stats(ref, p1); JND pairs store stats(p0, p1) in s0 (s1 is
a copy). Files are stored (core.storage) as features/<study>/<net>-<backbone digest>.npz. The digest hashes
the backbone's actual parameters, so a changed backbone (new weights file, other seed, other source) gets a
new file, and the files of older backbones of the same net are removed. The storage holds the truth; a
worker reads it through its local copy (fetched again only when the stored file changed) and writes back.
"""

from __future__ import annotations

import hashlib
import logging

import numpy as np
import torch

from core import storage
from metric.data import load_patch, to_tensor
from metric.functional import layer_stats
from metric.lpips import LPIPS

logger = logging.getLogger(__name__)
BATCH = 64


def backbone_digest(model: LPIPS) -> str:
    digest = hashlib.sha256(f"{model.net}:{model.version}:".encode())
    for name, tensor in sorted(model.backbone.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def device_for() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def media_patch(name: str, size: int = 64) -> np.ndarray:
    """A stimulus (media-relative name) as an H x W x 3 uint8 patch, read from its local copy: the name is
    content-addressed, so it is fetched once per machine, never again on a retrain."""
    return load_patch(storage.local_copy(name, immutable=True), size)


class FeatureCache:
    def __init__(self, study_id, model: LPIPS):
        self.model = model
        self.digest = backbone_digest(model)
        self.dir = f"features/{study_id}"
        self.name = f"{self.dir}/{model.net}-{self.digest}.npz"
        self.path = storage.local_path(self.dir) / f"{model.net}-{self.digest}.npz"  # the local copy
        self.computed = 0
        self.device = "none"  # where the statistics were computed this time (nothing new: none)

    def _load(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        try:
            path = storage.local_copy(self.name)
        except FileNotFoundError:
            return {}
        with np.load(path) as data:
            return {k: (a, b) for k, a, b in zip(data["ids"].tolist(), data["s0"], data["s1"], strict=True)}

    def _save(self, table: dict) -> None:
        ids = sorted(table)
        with storage.writing(self.name, keep_local=True) as tmp:
            np.savez(
                tmp,
                ids=np.array(ids),
                s0=np.stack([table[k][0] for k in ids]),
                s1=np.stack([table[k][1] for k in ids]),
            )
        for old in storage.listdir(self.dir):  # invalidated: another backbone of this net
            name = f"{self.dir}/{old}"
            if old.startswith(f"{self.model.net}-") and old.endswith(".npz") and name != self.name:
                storage.delete(name)

    @torch.no_grad()
    def stats(self, items: list[dict], *, kind: str, progress=None) -> tuple[np.ndarray, np.ndarray]:
        """items: dicts with id, ref_image, p0_image, p1_image (media-relative). Returns (s0, s1), N x C."""
        table = self._load()
        missing = [it for it in items if str(it["id"]) not in table]
        if missing:
            device = device_for()
            model = self.model.to(device).eval()
            for start in range(0, len(missing), BATCH):
                chunk = missing[start : start + BATCH]

                def batch(field, chunk=chunk):
                    return to_tensor(np.stack([media_patch(it[field]) for it in chunk])).to(device)

                if kind == "2afc":
                    fr, f0, f1 = (model.features(batch(f)) for f in ("ref_image", "p0_image", "p1_image"))
                    s0, s1 = layer_stats(fr, f0), layer_stats(fr, f1)
                else:
                    s0 = layer_stats(model.features(batch("p0_image")), model.features(batch("p1_image")))
                    s1 = s0
                for it, a, b in zip(chunk, s0.float().cpu().numpy(), s1.float().cpu().numpy(), strict=True):
                    table[str(it["id"])] = (a, b)
                if progress:
                    progress(min(start + BATCH, len(missing)), len(missing))
            model.to("cpu")  # heads are fitted and applied on the CPU (numpy statistics)
            self.computed = len(missing)
            self.device = str(device)
            self._save(table)
            logger.info("feature cache %s: computed %d items on %s", self.path.name, len(missing), device)
        s0 = np.stack([table[str(it["id"])][0] for it in items]) if items else np.zeros((0, 0), np.float32)
        s1 = np.stack([table[str(it["id"])][1] for it in items]) if items else np.zeros((0, 0), np.float32)
        return s0, s1
