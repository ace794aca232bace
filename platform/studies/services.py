"""Writes for studies: creation and stimulus building with the distortion engine."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from django.conf import settings
from django.db import transaction

import distortions
from core.exceptions import ApplicationError
from studies.models import Item, Study

logger = logging.getLogger(__name__)

STIMULI_DIR = "stimuli"  # media-relative; content-addressed PNGs shared by all studies


def study_create(*, name: str, kind: str, build_config: dict, owner=None, config: dict | None = None,
                 is_demo: bool = False) -> Study:  # fmt: skip
    build_config = {**build_config, "kind": kind}
    try:
        distortions.StudyConfig.from_dict(build_config)
    except distortions.DistortionError as exc:
        raise ApplicationError(f"invalid distortion-engine config: {exc}", {"field": "build_config"}) from exc
    study = Study(name=name, kind=kind, owner=owner, build_config=build_config, config=config or {}, is_demo=is_demo)
    study.full_clean()
    study.save()
    return study


def study_build_stimuli(*, study: Study, jobs: int | None = None, progress: bool = False, on_progress=None) -> int:
    """Run the engine for the study's build_config and create its Items. Idempotent: a study that
    already has items is left alone. Returns the number of items."""
    if study.items.exists():
        return study.items.count()
    Study.objects.filter(pk=study.pk).update(status=Study.Status.BUILDING, build_error="")
    media = Path(settings.MEDIA_ROOT)
    images_dir = media / STIMULI_DIR
    workdir = media / "builds" / str(study.pk)
    try:
        summary = distortions.build_study(
            study.build_config, workdir, jobs=jobs, progress=progress, images_dir=images_dir, on_progress=on_progress
        )
        entries = distortions.read_manifest(workdir / "manifest.jsonl")
        with transaction.atomic():
            Item.objects.bulk_create(
                [
                    Item(
                        study=study,
                        index=e["index"],
                        split=e["split"],
                        category=e["category"],
                        role=e["role"],
                        ref_image=f"{STIMULI_DIR}/{e['files']['ref']}",
                        p0_image=f"{STIMULI_DIR}/{e['files']['p0']}",
                        p1_image=f"{STIMULI_DIR}/{e['files']['p1']}",
                        expected=e["expected"] or "",
                        records={"patch": e["patch"], **e["records"], "pixels_sha256": e["pixels_sha256"]},
                    )
                    for e in entries
                ],
                batch_size=500,
            )
            Study.objects.filter(pk=study.pk).update(status=Study.Status.ACTIVE)
        logger.info("study %s: built %d items (manifest %s)", study.pk, len(entries), summary["manifest_sha256"][:12])
        return len(entries)
    except distortions.DistortionError as exc:
        Study.objects.filter(pk=study.pk).update(status=Study.Status.FAILED, build_error=str(exc))
        raise ApplicationError(f"building stimuli failed: {exc}") from exc
    except BaseException as exc:  # interrupted or crashed: never leave the study marked as building
        Study.objects.filter(pk=study.pk).update(status=Study.Status.FAILED, build_error=repr(exc)[:2000])
        raise
    finally:
        shutil.rmtree(workdir / "images", ignore_errors=True)


DEMO_BUILD_CONFIG = {
    "kind": "2afc",
    "seed": 2018,
    "n_items": 200,
    "source": {"type": "skimage"},
    "composition": {"p_compose": 0.3, "max_ops": 2},
    "splits": {"train": 0.75, "val": 0.25},
    "category": "traditional",
}


def demo_study_ensure(*, owner=None, n_items: int | None = None) -> tuple[Study, bool]:
    """The demo study: 2AFC triplets from scikit-image's bundled photographs. Reused if present."""
    existing = Study.objects.filter(is_demo=True).first()
    if existing is not None and existing.status == Study.Status.ACTIVE:
        return existing, False
    if existing is None:
        config = dict(DEMO_BUILD_CONFIG)
        if n_items is not None:
            config["n_items"] = n_items
        existing = study_create(
            name=settings.PERCEPTLAB["DEMO_STUDY_NAME"], kind="2afc", build_config=config, owner=owner, is_demo=True
        )
    study_build_stimuli(study=existing, progress=True)
    existing.refresh_from_db()
    return existing, True
