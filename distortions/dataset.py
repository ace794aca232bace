"""Study building: 2AFC triplets and JND pairs, sentinels and practice items, as PNG files plus a
JSONL manifest of records. The same config (seed included) gives byte-identical output.

Config (JSON; every key optional except ``kind``)::

    {"kind": "2afc" | "jnd", "seed": 0, "n_items": 100, "patch_size": 64,
     "source": {"type": "skimage"} | {"type": "folder", "path": ...} | {"type": "files", "paths": [...]},
     "skip_flat": true, "flat_threshold": 0.02,
     "families": {"photometric": 1, "noise": 1, "blur": 1, "spatial": 1, "compression": 1},
     "distortions": null,                # or a list of registry names to draw from
     "composition": {"p_compose": 0.3, "max_ops": 2},
     "severity_range": [0.0, 1.0],
     "splits": {"train": 0.8, "val": 0.2},
     "category": "auto",                 # auto: traditional / cnn / mix from the ops (BAPPS categories)
     "sentinels": {"n": 15, "light_severity": 0.02, "heavy_severity": 1.0, "identical_fraction": 0.8},
     "practice": {"n": 4},
     "jnd": {"identical_fraction": 0.1},
     "groups": {"distortions": K}}       # 2afc only, K >= 3: see below

Groups (for ASAP-style info_gain sampling, docs/sampling.md): with ``"groups": {"distortions": K}`` the
test items come in runs of K(K-1)/2 that share one reference patch (and one split) and are the pairs
(a, b), a < b, of K distorted versions of it; p0 is member a, p1 member b. Member m's chain is drawn from
its own stream, spawn_key (first item of the group, STREAM_MEMBER, m), so a member is the same image in
every pair it appears in. Each such item's entry carries ``"group": {"id", "size", "members": [a, b]}``.
The last group is cut short when n_items is not a multiple of K(K-1)/2.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import multiprocessing
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from distortions import record as rec
from distortions._parallel import ordered_map
from distortions.errors import DistortionError
from distortions.imageio import pixels_sha256, write_png
from distortions.pipeline import ChainSampler
from distortions.registry import get
from distortions.rng import (
    STREAM_LAYOUT,
    STREAM_MEMBER,
    STREAM_P0,
    STREAM_P1,
    STREAM_PATCH,
    generator_from,
    item_generator,
    seed_record,
)
from distortions.sources import PatchSource, source_from_dict

logger = logging.getLogger(__name__)

SENTINEL_OP = "gaussian_white_noise"


@dataclass
class StudyConfig:
    kind: str
    seed: int = 0
    n_items: int = 100
    patch_size: int = 64
    source: dict = field(default_factory=lambda: {"type": "skimage"})
    skip_flat: bool = True
    flat_threshold: float = 0.02
    families: dict = field(default_factory=dict)
    distortions: list | None = None
    composition: dict = field(default_factory=lambda: {"p_compose": 0.3, "max_ops": 2})
    severity_range: list = field(default_factory=lambda: [0.0, 1.0])
    splits: dict = field(default_factory=lambda: {"train": 0.8, "val": 0.2})
    category: str = "auto"
    sentinels: dict = field(default_factory=dict)
    practice: dict = field(default_factory=dict)
    jnd: dict = field(default_factory=dict)
    groups: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict) -> StudyConfig:
        if not isinstance(data, dict):
            raise DistortionError("a study config must be a JSON object")
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise DistortionError(f"unknown study config keys {sorted(unknown)}")
        if "kind" not in data:
            raise DistortionError("a study config needs 'kind': '2afc' or 'jnd'")
        cfg = cls(**data)
        cfg.validate()
        return cfg

    def to_dict(self) -> dict:
        return asdict(self)

    def validate(self) -> None:
        if self.kind not in ("2afc", "jnd"):
            raise DistortionError(f"kind must be '2afc' or 'jnd', got {self.kind!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise DistortionError(f"seed must be a non-negative integer, got {self.seed!r}")
        if not isinstance(self.n_items, int) or not (0 <= self.n_items <= 10_000_000):
            raise DistortionError(f"n_items must be an integer in [0, 10^7], got {self.n_items!r}")
        if not isinstance(self.patch_size, int) or not (16 <= self.patch_size <= 1024):
            raise DistortionError(f"patch_size must be an integer in [16, 1024], got {self.patch_size!r}")
        total = sum(self.splits.values()) if self.splits else 0
        if not self.splits or set(self.splits) - {"train", "val"} or total <= 0:
            raise DistortionError(f"splits must weight 'train' and/or 'val', got {self.splits!r}")
        if not self.category or "/" in self.category or self.category in ("practice", "sentinel"):
            raise DistortionError(f"category must be a plain name, got {self.category!r}")
        for key in ("n",):
            for section in (self.sentinels, self.practice):
                if key in section and (not isinstance(section[key], int) or section[key] < 0):
                    raise DistortionError(f"{key} must be a non-negative integer in {section!r}")
        if self.groups != {}:
            k = self.groups.get("distortions") if isinstance(self.groups, dict) else None
            if k is None or set(self.groups) != {"distortions"} or type(k) is not int or not 3 <= k <= 16:
                raise DistortionError(
                    f"groups must be {{'distortions': K}} with K in [3, 16], got {self.groups!r}"
                )
            if self.kind != "2afc":
                raise DistortionError("groups (K distorted versions of one reference) need kind '2afc'")
        self.sampler()  # validates families, distortions, composition, severity range
        source_from_dict(self.source)

    def sampler(self) -> ChainSampler:
        return ChainSampler(
            family_weights=self.families or None,
            names=self.distortions,
            p_compose=float(self.composition.get("p_compose", 0.3)),
            max_ops=int(self.composition.get("max_ops", 2)),
            severity_range=tuple(self.severity_range),
        )

    @property
    def n_sentinels(self) -> int:
        return int(self.sentinels.get("n", 15 if self.kind == "2afc" else 40))

    @property
    def n_practice(self) -> int:
        return int(self.practice.get("n", 4 if self.kind == "2afc" else 10))

    @property
    def group_pairs(self) -> list[tuple[int, int]]:
        """The member pairs (a, b) of one group in item order; empty without groups."""
        return list(itertools.combinations(range(self.groups["distortions"]), 2)) if self.groups else []


class _Pair(NamedTuple):
    """The two compared patches of an item (p0, p1) with their records, its category and expected answer."""

    images: dict
    records: dict
    category: str
    expected: str | None


class StudyBuilder:
    """Builds items one by one. Pure given the config: item i depends only on (seed, i)."""

    def __init__(self, config: StudyConfig, images_dir: Path | None = None):
        self.config = config
        self.images_dir = images_dir
        self.source: PatchSource = source_from_dict(config.source)
        self.chains = config.sampler()
        self.noise = get(SENTINEL_OP)()
        split_names = sorted(config.splits)
        weights = np.array([float(config.splits[s]) for s in split_names])
        self.split_names, self.split_probs = split_names, weights / weights.sum()
        self.group_pairs = config.group_pairs

    @property
    def n_total(self) -> int:
        return self.config.n_items + self.config.n_sentinels + self.config.n_practice

    def role_of(self, index: int) -> str:
        c = self.config
        if index < c.n_practice:
            return "practice"
        if index < c.n_practice + c.n_sentinels:
            return "sentinel"
        return "test"

    def _distorted(self, ref: np.ndarray, ops: list[dict], seed: dict, patch_meta: dict):
        return rec.distort(ref, ops, seed=seed, source=patch_meta)

    def _noise_ops(self, severity: float, rng) -> list[dict]:
        """A sentinel's (or practice item's) chain: one white noise at a given severity."""
        return [{"name": SENTINEL_OP, "params": self.noise.params_at(severity, rng)}]

    def _pair_2afc(self, role: str, ref: np.ndarray, patch_meta: dict, layout_rng, p0, p1) -> _Pair:
        """Two distorted patches; for a sentinel or practice item one light and one heavy noise, the
        light one on a random side (the expected answer). ``p0``, ``p1``: (generator, seed) per side."""
        c = self.config
        (rng0, seed0), (rng1, seed1) = p0, p1
        category, expected = (c.category if role == "test" else role), None
        if role == "test":
            ops0, ops1 = self.chains.sample(rng0), self.chains.sample(rng1)
            if c.category == "auto":
                cats = {self.chains.category_of(ops0), self.chains.category_of(ops1)}
                category = cats.pop() if len(cats) == 1 else "mix"
        else:
            light = float(c.sentinels.get("light_severity", 0.02))
            heavy = float(c.sentinels.get("heavy_severity", 1.0))
            light_first = bool(layout_rng.random() < 0.5)
            ops0 = self._noise_ops(light if light_first else heavy, rng0)
            ops1 = self._noise_ops(heavy if light_first else light, rng1)
            expected = "p0" if light_first else "p1"
        images, records = {}, {}
        images["p0"], records["p0"] = self._distorted(ref, ops0, seed0, patch_meta)
        images["p1"], records["p1"] = self._distorted(ref, ops1, seed1, patch_meta)
        return _Pair(images, records, category, expected)

    def _pair_jnd(self, role: str, ref: np.ndarray, patch_meta: dict, layout_rng, p1) -> _Pair:
        """The reference and a distorted patch, or the reference twice (an identical pair); a sentinel's
        distortion is a heavy noise and its expected answer says whether the pair is identical."""
        c = self.config
        rng1, seed1 = p1
        category, expected = (c.category if role == "test" else role), None
        images: dict = {"p0": ref}
        records: dict[str, dict | None] = {"p0": None}
        if role == "test":
            identical = bool(layout_rng.random() < float(c.jnd.get("identical_fraction", 0.1)))
            ops1 = None if identical else self.chains.sample(rng1)
            if c.category == "auto":
                category = self.chains.category_of(ops1 or [])
        else:
            heavy = float(c.sentinels.get("heavy_severity", 1.0))
            identical = bool(layout_rng.random() < float(c.sentinels.get("identical_fraction", 0.8)))
            ops1 = None if identical else self._noise_ops(heavy, rng1)
            expected = "same" if identical else "different"
        if ops1 is None:
            images["p1"], records["p1"] = ref, None
        else:
            images["p1"], records["p1"] = self._distorted(ref, ops1, seed1, patch_meta)
        return _Pair(images, records, category, expected)

    def group_of(self, index: int) -> dict | None:
        """A grouped test item's place: {"id", "size", "members": [a, b], "first": the group's first item
        index}; None for every other item."""
        if not self.group_pairs or self.role_of(index) != "test":
            return None
        group, pair = divmod(index - self.config.n_practice - self.config.n_sentinels, len(self.group_pairs))
        size = self.config.groups["distortions"]
        return {"id": group, "size": size, "members": list(self.group_pairs[pair]), "first": index - pair}

    def _member(self, first: int, member: int) -> tuple[np.random.Generator, dict]:
        seed = seed_record(self.config.seed, first, STREAM_MEMBER, member)
        return generator_from(seed), seed

    def build_item(self, index: int) -> dict:
        """Returns the manifest entry; images are in entry['_images'] (name -> uint8 array)."""
        c = self.config
        seed = c.seed
        group = self.group_of(index)
        anchor = index if group is None else group.pop("first")  # a group shares its patch and split
        patch_rng, patch_seed = item_generator(seed, anchor, STREAM_PATCH)
        ref, patch_meta = self.source.sample_patch(
            patch_rng, size=c.patch_size, skip_flat=c.skip_flat, flat_threshold=c.flat_threshold
        )
        patch_meta["seed"] = patch_seed
        layout_rng, _ = item_generator(seed, anchor, STREAM_LAYOUT)
        split = self.split_names[int(layout_rng.choice(len(self.split_names), p=self.split_probs))]
        role = self.role_of(index)
        if group is None:
            p0 = item_generator(seed, index, STREAM_P0)
            p1 = item_generator(seed, index, STREAM_P1)
        else:
            p0, p1 = (self._member(anchor, m) for m in group["members"])
        if c.kind == "2afc":
            pair = self._pair_2afc(role, ref, patch_meta, layout_rng, p0, p1)
        else:
            pair = self._pair_jnd(role, ref, patch_meta, layout_rng, p1)
        images = {"ref": ref, **pair.images}
        entry = {
            "index": index,
            "kind": c.kind,
            "role": role,
            "split": split,
            "category": pair.category,
            "expected": pair.expected,
            "patch": patch_meta,
            "records": pair.records,
            "pixels_sha256": {k: pixels_sha256(v) for k, v in images.items()},
        }
        if group is not None:
            entry["group"] = group
        if self.images_dir is not None:
            entry["files"] = {k: write_png(v, self.images_dir)[0] for k, v in images.items()}
        entry["_images"] = images
        return entry


# --- parallel driver --------------------------------------------------------------------------------
_WORKER: StudyBuilder | None = None


def _init_worker(config: dict, images_dir: str | None, cnn_pools: list[str]) -> None:
    global _WORKER
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if cnn_pools:
        from distortions.cnn.distortion import add_pool_dir

        for path in reversed(cnn_pools):
            add_pool_dir(path)
    _WORKER = StudyBuilder(StudyConfig.from_dict(config), Path(images_dir) if images_dir else None)


def _pool_context():
    """fork is fast, but forking a process whose torch (OpenMP) threads have started can deadlock the
    children: spawn whenever torch is loaded (CNN family, Celery workers, notebooks)."""
    return multiprocessing.get_context("spawn" if "torch" in sys.modules else "fork")


def _build_one(index: int) -> dict:
    assert _WORKER is not None
    entry = _WORKER.build_item(index)
    entry.pop("_images")
    return entry


def _registered_cnn_pools() -> list[str]:
    """The CNN pool folders registered in this process, which worker processes must register again."""
    if "distortions.cnn.distortion" not in sys.modules:
        return []
    from distortions.cnn.distortion import pool_dirs

    return [str(p) for p in pool_dirs()]


def _write_manifest(entries, manifest_path: Path) -> tuple[str, dict[str, int]]:
    """Writes the entries as canonical JSON lines (atomically); returns (its sha256, items per role)."""
    tmp = manifest_path.with_suffix(".jsonl.tmp")
    digest = hashlib.sha256()
    counts: dict[str, int] = {}
    with tmp.open("w") as handle:
        for entry in entries:
            line = rec.canonical_json(entry) + "\n"
            handle.write(line)
            digest.update(line.encode())
            counts[entry["role"]] = counts.get(entry["role"], 0) + 1
    tmp.replace(manifest_path)
    return digest.hexdigest(), counts


def build_study(
    config: dict | StudyConfig,
    outdir: str | Path,
    *,
    jobs: int | None = None,
    progress: bool = True,
    images_dir: str | Path | None = None,
    on_progress=None,
) -> dict:
    """Build a study into ``outdir`` (images/ + manifest.jsonl + study.json); returns the summary."""
    cfg = config if isinstance(config, StudyConfig) else StudyConfig.from_dict(config)
    outdir = Path(outdir)
    images = Path(images_dir) if images_dir else outdir / "images"
    images.mkdir(parents=True, exist_ok=True)
    outdir.mkdir(parents=True, exist_ok=True)
    builder = StudyBuilder(cfg, images)
    total = builder.n_total
    jobs = max(1, min(jobs or os.cpu_count() or 1, total or 1))
    cnn_pools = _registered_cnn_pools() if jobs > 1 else []
    if jobs == 1:
        builder.source.images  # noqa: B018  (load once)
    entries = ordered_map(
        _build_one if jobs > 1 else (lambda i: _strip(builder.build_item(i))),
        range(total),
        jobs=jobs,
        context=_pool_context(),
        initializer=_init_worker,
        initargs=(cfg.to_dict(), str(images), cnn_pools),
        chunksize=max(1, min(64, total // (jobs * 8) or 1)),
        progress=progress,
        desc=f"build {cfg.kind} study",
        on_progress=on_progress,
        report_every=50,
    )
    manifest_sha256, counts = _write_manifest(entries, outdir / "manifest.jsonl")
    summary = {
        "config": cfg.to_dict(),
        "engine_version": rec.engine_version(),
        "env": rec.library_versions(),
        "counts": counts,
        "n_items": total,
        "manifest_sha256": manifest_sha256,
        "images_dir": os.path.relpath(images, outdir),
    }
    (outdir / "study.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    logger.info("built %s study: %s items into %s", cfg.kind, total, outdir)
    return summary


def _strip(entry: dict) -> dict:
    entry.pop("_images", None)
    return entry


def read_manifest(path: str | Path) -> list[dict]:
    with Path(path).open() as handle:
        return [json.loads(line) for line in handle if line.strip()]
