"""Reproducibility records: what was applied, to what, with which seed and library versions.

A record is canonical JSON (sorted keys, no whitespace); its sha256 identifies it. Re-applying a
record to its input (``reapply``) reproduces the output byte for byte on the same build; the stored
image plus the concrete params remain the archive (numpy only guarantees stream compatibility on the
same build, so re-running a *seed* is a check, not the source of truth).
"""

from __future__ import annotations

import functools
import hashlib
import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import numpy as np

from distortions.errors import DistortionError, RecordMismatchError
from distortions.imageio import check_image, pixels_sha256
from distortions.pipeline import apply_ops

SCHEMA_VERSION = 1


def canonical_json(data) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False)


def record_sha256(record: dict) -> str:
    return hashlib.sha256(canonical_json(record).encode()).hexdigest()


@functools.cache
def engine_version() -> str:
    try:
        version = metadata.version("perceptlab")
    except metadata.PackageNotFoundError:  # pragma: no cover
        version = "0+unknown"
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):  # pragma: no cover
        commit = ""
    return f"{version}+g{commit}" if commit else version


@functools.cache
def library_versions() -> dict:
    versions = {"python": platform.python_version(), "machine": platform.machine()}
    for dist in ("numpy", "scipy", "scikit-image", "pillow", "opencv-python-headless", "torch"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:  # pragma: no cover
            versions[dist] = None
    return versions


def _op_entry(op: dict) -> dict:
    from distortions.registry import get

    entry = {"name": op["name"], "params": dict(op["params"])}
    extra = get(op["name"])().provenance(op["params"])
    if extra:
        entry["provenance"] = extra
    return entry


def make_record(
    *,
    ops: list[dict],
    seed: dict | None,
    input_image: np.ndarray,
    output_image: np.ndarray,
    source: dict | None = None,
) -> dict:
    return {
        "schema_version": SCHEMA_VERSION,
        "engine_version": engine_version(),
        "ops": [_op_entry(op) for op in ops],
        "seed": seed,
        "input": {"sha256": pixels_sha256(input_image), **({"source": source} if source else {})},
        "output": {"sha256": pixels_sha256(output_image)},
        "env": library_versions(),
    }


def distort(image: np.ndarray, ops: list[dict], *, seed: dict | None = None, source: dict | None = None):
    """Apply ops and return (output, record)."""
    out = apply_ops(image, ops)
    return out, make_record(ops=ops, seed=seed, input_image=image, output_image=out, source=source)


def reapply(record: dict, image: np.ndarray, *, verify: bool = True) -> np.ndarray:
    """Re-apply a record to its input. With verify, both hashes must match the record."""
    check_image(image)
    if not isinstance(record, dict) or record.get("schema_version") != SCHEMA_VERSION:
        raise DistortionError(f"not a distortion record of schema {SCHEMA_VERSION}")
    if verify and pixels_sha256(image) != record["input"]["sha256"]:
        raise RecordMismatchError("the input image does not match the record's input sha256")
    out = apply_ops(image, record["ops"])
    if verify and pixels_sha256(out) != record["output"]["sha256"]:
        raise RecordMismatchError(
            "re-applying the record gave different pixels; compare record['env'] with "
            f"this machine's {library_versions()}"
        )
    return out


def dumps(record: dict) -> str:
    return canonical_json(record)


def loads(text: str) -> dict:
    return json.loads(text)
