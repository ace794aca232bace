"""The registered ``cnn_autoencoder`` distortion: a patch through one trained autoencoder snapshot.

Pools (``pool.json`` + run folders, see ``trainer.train_pool``) are found in, in order: directories
added with ``add_pool_dir``, then ``$PERCEPTLAB_CNN_POOL`` (os.pathsep-separated) or, when that
variable is unset, ``~/.cache/perceptlab/cnn_pool``. Params name the checkpoint by sha256, so re-applying a
record finds exactly that file (and fails clearly if it is missing). Severity picks the snapshot: 0 = the last
(best-trained, lightest), 1 = the first (heaviest). Application runs on CPU in float32 with one thread:
deterministic.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from distortions.cnn.model import Generator
from distortions.cnn.space import ArchSpec
from distortions.cnn.trainer import corrupt
from distortions.errors import DistortionError
from distortions.registry import Distortion, Param, register
from distortions.rng import child_seed

_EXTRA_DIRS: list[Path] = []
_LOCK = threading.Lock()


def add_pool_dir(path: str | os.PathLike) -> None:
    p = Path(path).resolve()
    if p not in _EXTRA_DIRS:
        _EXTRA_DIRS.insert(0, p)
    _index.cache_clear()


def pool_dirs() -> list[Path]:
    """Added folders, then $PERCEPTLAB_CNN_POOL; the home default only when that variable is unset."""
    env = os.environ.get("PERCEPTLAB_CNN_POOL")
    if env is None:
        return [*_EXTRA_DIRS, Path.home() / ".cache" / "perceptlab" / "cnn_pool"]
    return [*_EXTRA_DIRS, *(Path(p) for p in env.split(os.pathsep) if p)]


@lru_cache(maxsize=8)
def _index(dirs: tuple[Path, ...]) -> dict:
    """sha256 -> (model index, step, file, spec) over every pool.json found."""
    index, models = {}, []
    for d in dirs:
        manifest = d / "pool.json"
        if not manifest.is_file():
            continue
        pool = json.loads(manifest.read_text())
        for m in pool["models"]:
            entry = {"dir": str(d / m["dir"]), "spec": m["spec"], "snapshots": m["snapshots"], "pool": str(d)}
            models.append(entry)
            for snap in m["snapshots"]:
                index[snap["sha256"]] = {
                    "file": str(d / m["dir"] / snap["file"]),
                    "step": snap["step"],
                    "spec": m["spec"],
                }
    return {"by_sha": index, "models": models}


def pool_index() -> dict:
    return _index(tuple(pool_dirs()))


@lru_cache(maxsize=64)
def _load_generator(path: str, sha256: str) -> Generator:
    data = Path(path).read_bytes()
    if hashlib.sha256(data).hexdigest() != sha256:
        raise DistortionError(f"checkpoint {path} does not match its recorded sha256 {sha256[:12]}...")
    import io

    state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
    model = Generator(ArchSpec.from_dict(state["spec"]))
    model.load_state_dict(state["generator"], strict=True)
    return model.eval()


@register
class CnnAutoencoder(Distortion):
    name, family = "cnn_autoencoder", "cnn"
    summary = "Output of a small randomly drawn autoencoder snapshot (the paper's CNN family)."
    severity_doc = "snapshot: severity 0 -> the last (best-trained) snapshot, 1 -> the first; model uniform"
    params_schema = {
        "model": Param(int, 0, 100_000),
        "step": Param(int, 1, 10**9),
        "checkpoint_sha256": Param(str, pattern=r"[0-9a-f]{64}"),
        "seed": Param(int, 0, 2**32 - 1),
    }
    extra_spec_keys = ("pool_dir",)
    stands_alone = True  # an autoencoder output is a distortion on its own (BAPPS keeps the families apart)
    opt_in = True  # drawn only when a study weights the family: it needs a trained model pool
    category = "cnn"

    @classmethod
    def available(cls) -> bool:
        return bool(pool_index()["models"])

    def __init__(self, severity_range=(0.0, 1.0), pool_dir: str | None = None):
        super().__init__(severity_range)
        self.pool_dir = pool_dir
        if pool_dir:
            add_pool_dir(pool_dir)

    def to_dict(self) -> dict:
        return {**super().to_dict(), **({"pool_dir": self.pool_dir} if self.pool_dir else {})}

    def _models(self) -> list[dict]:
        models = pool_index()["models"]
        if not models:
            raise DistortionError(
                "no trained CNN-autoencoder pool found in "
                + ", ".join(map(str, pool_dirs()))
                + ": train one with `python -m distortions train-cnn-pool DIR` and pass pool_dir or set "
                "PERCEPTLAB_CNN_POOL"
            )
        return models

    def _params_at(self, s, rng):
        models = self._models()
        m = int(rng.integers(len(models)))
        snaps = models[m]["snapshots"]
        snap = snaps[int(round((1.0 - s) * (len(snaps) - 1)))]
        return {
            "model": m,
            "step": int(snap["step"]),
            "checkpoint_sha256": snap["sha256"],
            "seed": child_seed(rng),
        }

    def provenance(self, params: dict) -> dict | None:
        entry = pool_index()["by_sha"].get(params.get("checkpoint_sha256"))
        if entry is None:
            return None
        return {"arch": entry["spec"], "training_seed": entry["spec"]["seed"], "step": entry["step"]}

    def _apply(self, image, model, step, checkpoint_sha256, seed):
        entry = pool_index()["by_sha"].get(checkpoint_sha256)
        if entry is None:
            raise DistortionError(
                f"CNN checkpoint {checkpoint_sha256[:12]}... (model {model}, step {step}) "
                "is not in any pool under " + ", ".join(map(str, pool_dirs()))
            )
        net = _load_generator(entry["file"], checkpoint_sha256)
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() * 2 - 1
        with _LOCK, torch.no_grad():
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                x = corrupt(x, net.spec, torch.Generator().manual_seed(int(seed)))
                y = net(x)
            finally:
                torch.set_num_threads(threads)
        return ((y[0].permute(1, 2, 0).numpy() + 1.0) / 2.0).clip(0.0, 1.0).astype(np.float32)
