"""Downloadable models: a ready model version as a metric bundle (zip: heads.pth, trunk.pth when the trunk
is not torchvision's ImageNet one, model_card.json, MODEL_CARD.md). Built once per version on first
download under MEDIA_ROOT/models/<study>/bundles/ (a version never changes once ready)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from django.conf import settings

from core.exceptions import ApplicationError
from training.models import ModelVersion
from training.selectors import model_card, ships_trunk


def bundle_name(version: ModelVersion) -> str:
    return f"perceptlab-{version.backbone}-{version.weights}-{version.variant}-v{version.version}"


def _stored(rel: str, sha256: str, what: str) -> Path:
    path = Path(settings.MEDIA_ROOT) / rel
    if not rel or not path.is_file():
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


def model_bundle(*, version: ModelVersion) -> Path:
    """The version's bundle zip, built on first call."""
    from metric.bundle import write_bundle_zip  # torch: only where a bundle is built

    heads, trunk = model_files(version=version)
    path = (
        Path(settings.MEDIA_ROOT)
        / "models"
        / str(version.study_id)
        / "bundles"
        / f"{bundle_name(version)}.zip"
    )
    if not path.is_file():
        write_bundle_zip(
            path, heads=heads, trunk=trunk, card=model_card(version=version), folder=bundle_name(version)
        )
    return path
