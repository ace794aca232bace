"""Downloadable models: a ready model version as a metric bundle (zip: heads.pth, trunk.pth when the trunk
is not torchvision's ImageNet one, model_card.json, MODEL_CARD.md). Built once per version on first
download, stored as models/<study>/bundles/<name>.zip (core.storage; a version never changes once ready)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from core import storage
from core.exceptions import ApplicationError
from training.models import ModelVersion
from training.selectors import model_card, ships_trunk


def bundle_name(version: ModelVersion) -> str:
    return f"perceptlab-{version.backbone}-{version.weights}-{version.variant}-v{version.version}"


def _stored(rel: str, sha256: str, what: str) -> Path:
    """A local path holding the stored file `rel` (core.storage.local_copy), checked against its sha256."""
    try:
        path = storage.local_copy(rel, immutable=True) if rel else None  # versioned or content-addressed
    except FileNotFoundError:
        path = None
    if path is None:
        raise ApplicationError(f"the model's {what} file is missing from media storage", status_code=410)
    if sha256 and hashlib.sha256(path.read_bytes()).hexdigest() != sha256:
        raise ApplicationError(
            f"the model's {what} file does not match its recorded sha256 (damaged)", status_code=410
        )
    return path


def model_files(*, version: ModelVersion) -> tuple[Path, Path | None]:
    """The heads file and the trunk file (None for the standard ImageNet trunk), checked against their
    recorded sha256s. Only a ready version has files to download (409 otherwise)."""
    if version.status != ModelVersion.Status.READY:
        raise ApplicationError(
            f"the model version is {version.status}; only ready versions can be downloaded",
            {"status": version.status},
            status_code=409,
        )
    heads = _stored(version.heads_path, version.heads_sha256, "heads")
    trunk = None
    if ships_trunk(version):
        if not version.trunk_path:
            raise ApplicationError(
                "this model was trained before trunks were saved with models, so it cannot be used "
                "elsewhere; retrain the study to get a downloadable model",
                {"status": version.status},
                status_code=409,
            )
        trunk = _stored(version.trunk_path, version.trunk_sha256, "trunk")
    return heads, trunk


def model_bundle(*, version: ModelVersion) -> str:
    """The stored name of the version's bundle zip, built on first call."""
    from metric.bundle import write_bundle_zip  # torch: only where a bundle is built

    heads, trunk = model_files(version=version)
    name = f"models/{version.study_id}/bundles/{bundle_name(version)}.zip"
    if not storage.exists(name):
        with storage.writing(name) as tmp:
            write_bundle_zip(
                tmp, heads=heads, trunk=trunk, card=model_card(version=version), folder=bundle_name(version)
            )
    return name
