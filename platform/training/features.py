"""The feature cache: per item and backbone, the sufficient statistics of a frozen trunk (metric issue 7),
computed once. With them, any set of lin heads scores an item with one dot product, so retraining and
re-evaluating never run the backbone again for items already seen.

2AFC items store two rows, stats(ref, p0) and stats(ref, p1); JND pairs store stats(p0, p1) in s0 (s1 is
a copy). A study's cache for one backbone is a set of parts in the media storage (core.storage),
features/<study>/<net>-<backbone digest>-<token>.npy: each part is one .npy of records (item id, s0, s1),
written once under a fresh name and never rewritten, so a job adds a part holding only the items it
computed (not the whole table again: 1.7 GB for AlexNet at BAPPS scale), a worker fetches each part once,
and parts are memory-mapped, not read whole. Past `MAX_PARTS` parts the smaller ones are merged into one.
The digest hashes the backbone's actual parameters, so a changed backbone (new weights file, other seed,
other source) gets new parts, and the parts of older backbones of the same net are removed. A part that
cannot be read (truncated, foreign) is removed, and its items are computed again. The single-file cache of
earlier versions (<net>-<digest>.npz) is read once and stored as a part.

The baselines' distances (l2_lab, psnr, ...: functions of an item's images, which never change) are cached
per item in features/<study>/baselines.npz the same way for the retrain's val split and the pool's
candidates (`baseline_distances`).
"""

from __future__ import annotations

import hashlib
import logging
import uuid

import numpy as np
import torch

from core import storage
from metric.baselines import BASELINES
from metric.data import load_patch, to_tensor
from metric.functional import layer_stats
from metric.lpips import LPIPS

logger = logging.getLogger(__name__)
BATCH = 64
MAX_PARTS = 8  # past this many parts, all but the largest are merged into one
ID_DTYPE = "S36"  # an item id as text (a uuid's 36 characters)


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


def part_dtype(channels: int) -> np.dtype:
    """A part's record: the item id and its two statistics rows."""
    return np.dtype([("id", ID_DTYPE), ("s0", "<f4", (channels,)), ("s1", "<f4", (channels,))])


def id_keys(ids: list[str]) -> list[bytes]:
    """Item ids as a part stores them; ValueError for an id longer than a part's field (never cut short)."""
    keys = [str(i).encode() for i in ids]
    if any(len(k) > np.dtype(ID_DTYPE).itemsize for k in keys):
        raise ValueError(f"feature cache ids are at most {np.dtype(ID_DTYPE).itemsize} bytes (a uuid)")
    return keys


def part_records(ids: list[str], s0: np.ndarray, s1: np.ndarray) -> np.ndarray:
    records = np.empty(len(ids), dtype=part_dtype(s0.shape[1]))
    records["id"] = id_keys(ids)
    records["s0"], records["s1"] = s0, s1
    return records


def read_part(path) -> np.ndarray:
    """A stored part, memory-mapped (read-only). ValueError when the file is not a part (corrupt, foreign)."""
    try:
        records = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, EOFError, ValueError) as exc:  # empty, truncated, not numpy (pickle refused)
        raise ValueError(f"not a feature cache part: {exc}") from exc
    names = records.dtype.names or ()
    if records.ndim != 1 or names != ("id", "s0", "s1") or records.dtype["id"] != np.dtype(ID_DTYPE):
        raise ValueError(f"not a feature cache part: dtype {records.dtype}, shape {records.shape}")
    return records


class FeatureCache:
    def __init__(self, study_id, model: LPIPS):
        self.model = model
        self.digest = backbone_digest(model)
        self.dir = f"features/{study_id}"
        self.prefix = f"{model.net}-{self.digest}-"  # this backbone's parts: <prefix><token>.npy
        self.legacy = f"{self.dir}/{model.net}-{self.digest}.npz"  # the single-file cache of earlier versions
        self.path = storage.local_path(self.dir)  # the local copies' folder
        self.computed = 0
        self.device = "none"  # where the statistics were computed this time (nothing new: none)
        self._parts: dict[str, np.ndarray] | None = None  # part name -> records, read once per instance
        self._index: dict[bytes, int] = {}  # item id -> row in the parts one after the other
        self._starts: list[tuple[int, str]] = []  # (first row, part name), in that order

    @property
    def name(self) -> str:
        """What the cache is called (ModelVersion.train_info): its parts' common prefix."""
        return f"{self.prefix}*.npy"

    def part_names(self) -> list[str]:
        return [n for n in storage.listdir(self.dir) if n.startswith(self.prefix) and n.endswith(".npy")]

    def _add_part(self, name: str, records: np.ndarray) -> None:
        start = self._starts[-1][0] + len(self._parts[self._starts[-1][1]]) if self._starts else 0
        self._parts[name] = records
        self._starts.append((start, name))
        for row, key in enumerate(records["id"].tolist(), start):
            self._index.setdefault(key, row)  # an item in two parts (two jobs at once): the first

    def _load(self) -> None:
        if self._parts is not None:
            return
        self._parts, self._index, self._starts = {}, {}, []
        for name in self.part_names():
            full = f"{self.dir}/{name}"
            try:
                records = read_part(storage.local_copy(full, immutable=True))  # never rewritten
            except FileNotFoundError:  # removed meanwhile (merged by another job)
                continue
            except ValueError as exc:
                logger.warning("feature cache %s: %s; removed, its items are computed again", full, exc)
                storage.delete(full)
                continue
            self._add_part(name, records)
        if storage.exists(self.legacy):
            self._import_legacy()

    def _import_legacy(self) -> None:
        try:
            with np.load(storage.local_copy(self.legacy)) as data:
                ids, s0, s1 = data["ids"].tolist(), data["s0"], data["s1"]
                self._write_part(part_records([str(i) for i in ids], s0, s1))
        except (OSError, ValueError, KeyError, EOFError) as exc:
            logger.warning("feature cache %s unreadable (%s): removed", self.legacy, exc)
        storage.delete(self.legacy)

    def _write_part(self, records: np.ndarray) -> str:
        name = f"{self.prefix}{uuid.uuid4().hex[:12]}.npy"
        with storage.writing(f"{self.dir}/{name}", keep_local=True) as tmp:
            np.save(tmp, records, allow_pickle=False)
        self._add_part(name, read_part(storage.local_copy(f"{self.dir}/{name}", immutable=True)))
        return name

    def _merge(self) -> None:
        """Past MAX_PARTS parts: every part but the largest merged into one (then removed)."""
        names = sorted(self._parts, key=lambda n: len(self._parts[n]))
        if len(names) <= MAX_PARTS:
            return
        small = names[:-1]
        merged = np.concatenate([np.asarray(self._parts[n]) for n in small])
        _, first = np.unique(merged["id"], return_index=True)
        self._write_part(merged[np.sort(first)])
        kept = [(n, r) for n, r in self._parts.items() if n not in small]
        self._parts, self._index, self._starts = {}, {}, []
        for n, records in kept:
            self._add_part(n, records)
        for n in small:
            storage.delete(f"{self.dir}/{n}")

    def _remove_other_backbones(self) -> None:
        for old in storage.listdir(self.dir):  # invalidated: another backbone of this net
            if (
                old.startswith(f"{self.model.net}-")
                and old.endswith((".npy", ".npz"))
                and not old.startswith(self.prefix)
                and f"{self.dir}/{old}" != self.legacy
            ):
                storage.delete(f"{self.dir}/{old}")

    def _save(self, records: np.ndarray) -> None:
        self._write_part(records)
        self._merge()
        self._remove_other_backbones()

    def _gather(self, items: list[dict]) -> tuple[np.ndarray, np.ndarray]:
        rows = np.fromiter((self._index[str(it["id"]).encode()] for it in items), np.int64, len(items))
        first = np.array([start for start, _ in self._starts])
        part_of = np.searchsorted(first, rows, side="right") - 1
        channels = self._parts[self._starts[0][1]].dtype["s0"].shape[0]
        s0 = np.empty((len(items), channels), np.float32)
        s1 = np.empty((len(items), channels), np.float32)
        for k, (start, name) in enumerate(self._starts):
            out = np.flatnonzero(part_of == k)
            if len(out):
                records, local = self._parts[name], rows[out] - start
                s0[out], s1[out] = records["s0"][local], records["s1"][local]
        return s0, s1

    @torch.no_grad()
    def stats(self, items: list[dict], *, kind: str, progress=None) -> tuple[np.ndarray, np.ndarray]:
        """items: dicts with id, ref_image, p0_image, p1_image (media-relative). Returns (s0, s1), N x C."""
        self._load()
        missing = [it for it in items if str(it["id"]).encode() not in self._index]
        if missing:
            device = device_for()
            model = self.model.to(device).eval()
            records = None  # the new part, filled batch by batch (one copy of the new statistics in memory)
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
                if records is None:
                    records = np.empty(len(missing), dtype=part_dtype(s0.shape[1]))
                    records["id"] = id_keys([it["id"] for it in missing])
                rows = slice(start, start + len(chunk))
                records["s0"][rows], records["s1"][rows] = s0.float().cpu().numpy(), s1.float().cpu().numpy()
                if progress:
                    progress(min(start + BATCH, len(missing)), len(missing))
            model.to("cpu")  # heads are fitted and applied on the CPU (numpy statistics)
            self.computed = len(missing)
            self.device = str(device)
            self._save(records)
            del records
            logger.info("feature cache %s: computed %d items on %s", self.name, len(missing), device)
        if not items:
            return np.zeros((0, 0), np.float32), np.zeros((0, 0), np.float32)
        return self._gather(items)


# --- baselines ------------------------------------------------------------------------------------------
def apply_pairs(fn, a: np.ndarray, b: np.ndarray, batch: int = 100) -> np.ndarray:
    """A baseline on N x H x W x 3 uint8 pairs, in batches: N distances (float64)."""
    out = [
        fn(to_tensor(a[s : s + batch]), to_tensor(b[s : s + batch])).flatten().double().numpy()
        for s in range(0, len(a), batch)
    ]
    return np.concatenate(out) if out else np.zeros(0)


def baseline_distances(study_id, kind: str, names: list[str], items: list[dict]) -> list[tuple]:
    """(d0, d1) per baseline over `items` (2AFC: ref to p0, ref to p1; JND: p0 to p1, twice), each item's
    computed once and kept in features/<study>/baselines.npz in the media storage (core.storage): a
    baseline is a function of an item's images, which never change."""
    cache = f"features/{study_id}/baselines.npz"
    table: dict = {}
    if storage.exists(cache):
        try:
            with np.load(storage.local_copy(cache)) as data:
                table = {key: data[key] for key in data.files}
        except (OSError, ValueError, EOFError) as exc:
            logger.warning("baseline cache %s unreadable (%s): computed again", cache, exc)
    out = []
    changed = False
    for name in names:
        stored = table.get(f"{name}:ids", np.array([])).tolist()
        known = dict(zip(stored, table.get(name, np.zeros((len(stored), 2))), strict=True))
        missing = [it for it in items if str(it["id"]) not in known]
        if missing:

            def stack(field, rows=missing):
                return np.stack([media_patch(it[field]) for it in rows])

            if kind == "2afc":
                ref = stack("ref_image")
                d0 = apply_pairs(BASELINES[name], ref, stack("p0_image"))
                d1 = apply_pairs(BASELINES[name], ref, stack("p1_image"))
            else:
                d0 = d1 = apply_pairs(BASELINES[name], stack("p0_image"), stack("p1_image"))
            known.update({str(it["id"]): (a, b) for it, a, b in zip(missing, d0, d1, strict=True)})
            table[f"{name}:ids"] = np.array(sorted(known))
            table[name] = np.array([known[k] for k in sorted(known)], dtype=np.float64)
            changed = True
        pairs = np.array([known[str(it["id"])] for it in items], dtype=np.float64).reshape(len(items), 2)
        out.append((pairs[:, 0], pairs[:, 1]))
    if changed:
        with storage.writing(cache, keep_local=True) as tmp:
            np.savez(tmp, **table)
    return out
