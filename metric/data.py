"""Datasets: the BAPPS directory format (read and write) and our JSONL manifest format.

BAPPS (docs/science.md, "BAPPS on disk"): ``2afc/<split>/<category>/{ref,p0,p1,judge}`` and
``jnd/<split>/<category>/{p0,p1,same}``. Each folder is listed recursively and sorted on its own, and
item i is the i-th file of every folder (as the reference loader does); we also check that the stems
agree, which the reference never did. ``judge`` = fraction who chose p1; ``same`` = fraction who said
same; one number per .npy. Images are resized to 64x64 (PIL bilinear, as torchvision's Resize(64)).

Manifest (ours): JSONL, one item a line, image paths relative to the manifest's folder::

    {"kind": "2afc", "split": "val", "category": "traditional", "ref": "...png", "p0": "...", "p1": "...",
     "p1_votes": 3, "n_votes": 5}
    {"kind": "jnd", "split": "val", "category": "cnn", "p0": "...", "p1": "...", "same_votes": 1,
     "n_votes": 3}
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from metric.errors import MetricError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".ppm", ".bmp"}


def load_patch(path: str | os.PathLike, size: int | None = 64) -> np.ndarray:
    with Image.open(path) as img:
        img = img.convert("RGB")
        if size is not None and img.size != (size, size):
            img = img.resize((size, size), Image.BILINEAR)
        return np.asarray(img, dtype=np.uint8).copy()


def to_tensor(batch: np.ndarray) -> torch.Tensor:
    """N x H x W x 3 uint8 -> N x 3 x H x W float32 in [-1, 1]."""
    return torch.from_numpy(batch).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)


@dataclass
class TwoAFCData:
    ref: np.ndarray  # N x H x W x 3 uint8
    p0: np.ndarray
    p1: np.ndarray
    p: np.ndarray  # fraction who chose p1
    categories: list[str]
    n_votes: np.ndarray | None = None
    ids: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.p)

    def subset(self, idx) -> TwoAFCData:
        idx = np.asarray(idx)
        return TwoAFCData(
            self.ref[idx],
            self.p0[idx],
            self.p1[idx],
            self.p[idx],
            [self.categories[i] for i in idx],
            None if self.n_votes is None else self.n_votes[idx],
            [self.ids[i] for i in idx] if self.ids else [],
        )


@dataclass
class JNDData:
    p0: np.ndarray
    p1: np.ndarray
    same: np.ndarray  # fraction who said same
    categories: list[str]
    n_votes: np.ndarray | None = None
    ids: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.same)


def _sorted_files(folder: Path, suffixes: set[str]) -> list[Path]:
    if not folder.is_dir():
        raise MetricError(f"BAPPS folder missing: {folder}")
    return sorted(
        (
            Path(root) / f
            for root, _, files in os.walk(folder)
            for f in files
            if Path(f).suffix.lower() in suffixes
        ),
        key=lambda p: str(p.relative_to(folder)),
    )


def _paired(root: Path, folders: dict[str, set[str]]) -> dict[str, list[Path]]:
    lists = {name: _sorted_files(root / name, suffixes) for name, suffixes in folders.items()}
    counts = {name: len(v) for name, v in lists.items()}
    if len(set(counts.values())) != 1 or not next(iter(counts.values())):
        raise MetricError(f"{root}: folders must hold the same, non-zero number of files, got {counts}")
    stems = {name: [p.stem for p in v] for name, v in lists.items()}
    first = next(iter(stems.values()))
    for name, s in stems.items():
        if s != first:
            bad = next(i for i, (a, b) in enumerate(zip(first, s, strict=True)) if a != b)
            raise MetricError(
                f"{root}: file stems disagree at item {bad}: {first[bad]!r} vs {name}/{s[bad]!r}"
            )
    return lists


def _npy_value(path: Path) -> float:
    value = np.load(path).astype(np.float32).reshape(-1)
    if value.size != 1:
        raise MetricError(f"{path} must hold exactly one number, holds {value.size}")
    return float(value[0])


def read_bapps_2afc(roots: str | os.PathLike | list, *, size: int = 64) -> TwoAFCData:
    """Read one or more ``2afc/<split>/<category>`` folders."""
    roots = [Path(r) for r in (roots if isinstance(roots, list | tuple) else [roots])]
    refs, p0s, p1s, ps, cats, ids = [], [], [], [], [], []
    for root in roots:
        lists = _paired(
            root, {"ref": IMAGE_SUFFIXES, "p0": IMAGE_SUFFIXES, "p1": IMAGE_SUFFIXES, "judge": {".npy"}}
        )
        for i in range(len(lists["ref"])):
            refs.append(load_patch(lists["ref"][i], size))
            p0s.append(load_patch(lists["p0"][i], size))
            p1s.append(load_patch(lists["p1"][i], size))
            ps.append(_npy_value(lists["judge"][i]))
            cats.append(root.name)
            ids.append(f"{root.name}/{lists['ref'][i].stem}")
    return TwoAFCData(np.stack(refs), np.stack(p0s), np.stack(p1s), np.array(ps, np.float64), cats, None, ids)


def read_bapps_jnd(roots: str | os.PathLike | list, *, size: int = 64) -> JNDData:
    roots = [Path(r) for r in (roots if isinstance(roots, list | tuple) else [roots])]
    p0s, p1s, same, cats, ids = [], [], [], [], []
    for root in roots:
        lists = _paired(root, {"p0": IMAGE_SUFFIXES, "p1": IMAGE_SUFFIXES, "same": {".npy"}})
        for i in range(len(lists["p0"])):
            p0s.append(load_patch(lists["p0"][i], size))
            p1s.append(load_patch(lists["p1"][i], size))
            same.append(_npy_value(lists["same"][i]))
            cats.append(root.name)
            ids.append(f"{root.name}/{lists['p0'][i].stem}")
    return JNDData(np.stack(p0s), np.stack(p1s), np.array(same, np.float64), cats, None, ids)


def bapps_stem(i: int, n: int) -> str:
    """Zero-padded stem of item i of n (at least 6 digits), shared by every folder of a BAPPS category."""
    return f"{i:0{max(6, len(str(n)))}d}"


def write_bapps_2afc(root: str | os.PathLike, data: TwoAFCData) -> Path:
    """Write ``root/<category>/{ref,p0,p1,judge}`` with zero-padded stems shared across folders."""
    root = Path(root)
    for cat in sorted(set(data.categories)):
        idx = [i for i, c in enumerate(data.categories) if c == cat]
        for sub in ("ref", "p0", "p1", "judge"):
            (root / cat / sub).mkdir(parents=True, exist_ok=True)
        for j, i in enumerate(idx):
            stem = bapps_stem(j, len(idx))
            for sub, arr in (("ref", data.ref), ("p0", data.p0), ("p1", data.p1)):
                Image.fromarray(arr[i]).save(root / cat / sub / f"{stem}.png")
            np.save(root / cat / "judge" / f"{stem}.npy", np.array([data.p[i]], dtype=np.float32))
    return root


def write_bapps_jnd(root: str | os.PathLike, data: JNDData) -> Path:
    root = Path(root)
    for cat in sorted(set(data.categories)):
        idx = [i for i, c in enumerate(data.categories) if c == cat]
        for sub in ("p0", "p1", "same"):
            (root / cat / sub).mkdir(parents=True, exist_ok=True)
        for j, i in enumerate(idx):
            stem = bapps_stem(j, len(idx))
            Image.fromarray(data.p0[i]).save(root / cat / "p0" / f"{stem}.png")
            Image.fromarray(data.p1[i]).save(root / cat / "p1" / f"{stem}.png")
            np.save(root / cat / "same" / f"{stem}.npy", np.array([data.same[i]], dtype=np.float32))
    return root


def read_manifest(
    path: str | os.PathLike, *, kind: str | None = None, split: str | None = None, size: int = 64
):
    """Read our JSONL manifest into TwoAFCData or JNDData (one kind per call)."""
    path = Path(path)
    if not path.is_file():
        raise MetricError(f"manifest not found: {path}")
    rows = []
    with path.open() as handle:
        for n, line in enumerate(handle, start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise MetricError(f"{path}:{n}: not JSON ({exc})") from exc
    kinds = {r.get("kind") for r in rows} if kind is None else {kind}
    if len(kinds) != 1:
        raise MetricError(f"{path} mixes kinds {sorted(map(str, kinds))}; pass kind='2afc' or 'jnd'")
    kind = kinds.pop()
    rows = [r for r in rows if r.get("kind") == kind and (split is None or r.get("split") == split)]
    if not rows:
        raise MetricError(f"{path}: no {kind} items" + (f" in split {split!r}" if split else ""))
    base = path.parent

    def img(rel: str) -> np.ndarray:
        return load_patch(base / rel, size)

    need = (
        ("ref", "p0", "p1", "n_votes", "p1_votes")
        if kind == "2afc"
        else ("p0", "p1", "n_votes", "same_votes")
    )
    for i, r in enumerate(rows):
        missing = [key for key in need if key not in r]
        if missing:
            votes = (
                " with no votes (e.g. the manifest.jsonl of `distortions build-study`)"
                if ("n_votes" in missing)
                else ""
            )
            raise MetricError(
                f"{path}: {kind} item {r.get('id', i)!r} has no {', '.join(missing)}: a manifest{votes} "
                f"cannot be trained or evaluated on; each {kind} item needs {', '.join(need)} "
                "(a study export's items.jsonl has them)"
            )
    ids = [str(r.get("id", i)) for i, r in enumerate(rows)]
    cats = [r.get("category", "default") for r in rows]
    n = np.array([r["n_votes"] for r in rows], dtype=np.float64)
    if kind == "2afc":
        k = np.array([r["p1_votes"] for r in rows], dtype=np.float64)
        return TwoAFCData(
            np.stack([img(r["ref"]) for r in rows]),
            np.stack([img(r["p0"]) for r in rows]),
            np.stack([img(r["p1"]) for r in rows]),
            k / n,
            cats,
            n,
            ids,
        )
    if kind == "jnd":
        k = np.array([r["same_votes"] for r in rows], dtype=np.float64)
        return JNDData(
            np.stack([img(r["p0"]) for r in rows]),
            np.stack([img(r["p1"]) for r in rows]),
            k / n,
            cats,
            n,
            ids,
        )
    raise MetricError(f"unknown kind {kind!r} in {path}")


def read_image_folders(
    folders: str | os.PathLike | list, *, n: int | None = None, seed: int = 0, size: int = 64
) -> np.ndarray:
    """Images for a k-means corpus, resized to ``size`` x ``size`` (PIL bilinear, as the BAPPS loader).

    A BAPPS folder (one with ``p0/`` and ``p1/``) gives its ``ref``, ``p0`` and ``p1`` images, in the order
    ``train_heads`` pools a training set (every folder's ref, then every p0, then every p1), so the same
    folders, ``n`` and ``seed`` draw the same corpus, and so the same trunk, as training on them did. A
    plain folder gives every image file under it (recursively, sorted), after the BAPPS ones. With ``n``, a
    seeded sample of ``n`` files is read (the one ``metric.backbones.kmeans_corpus(n=n, seed=seed)`` would
    draw from all of them), so a large dataset is not read whole. Returns N x size x size x 3 uint8."""
    folders = [Path(f) for f in (folders if isinstance(folders, list | tuple) else [folders])]
    if not folders:
        raise MetricError("no k-means corpus folder given")
    for folder in folders:
        if not folder.is_dir():
            raise MetricError(f"k-means corpus folder not found (or not a folder): {folder}")
    bapps = [f for f in folders if (f / "p0").is_dir() and (f / "p1").is_dir()]
    files: list[Path] = []
    for role in ("ref", "p0", "p1"):
        files += [p for f in bapps if (f / role).is_dir() for p in _sorted_files(f / role, IMAGE_SUFFIXES)]
    for folder in folders:
        found = (
            [p for p in files if folder in p.parents]
            if folder in bapps
            else _sorted_files(folder, IMAGE_SUFFIXES)
        )
        if not found:
            raise MetricError(
                f"k-means corpus folder {folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})"
            )
        if folder not in bapps:
            files += found
    if n is not None:
        if n < 1:
            raise MetricError(f"the k-means corpus needs at least 1 patch, got {n}")
        pick = np.sort(np.random.default_rng(seed).permutation(len(files))[:n])
        files = [files[i] for i in pick]
    images = []
    for path in files:
        try:
            images.append(load_patch(path, size))
        except (OSError, ValueError, Image.DecompressionBombError) as exc:  # unreadable, not an image, huge
            raise MetricError(f"k-means corpus: cannot read image {path}: {exc}") from exc
    return np.stack(images)
