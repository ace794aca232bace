"""Importing real-algorithm outputs from an uploaded zip, in two steps.

1. `study_import_start` (the API, synchronous): the zip's directory and every image's header are checked
   (names, counts, sizes, compression ratios, pixel counts) before anything is decoded, and a bad archive
   gets a 4xx naming the bad file at once. The upload is then stored privately as
   ``imports/<study>/<random>.zip`` (core.storage; never web-served: the media view serves
   ``stimuli/<sha256>.png`` only) and the Celery job `studies.study_import_items` is queued.
2. `study_import_items` (the job): decodes one triplet at a time (never all the images), writes their PNGs
   to a private local staging folder, and only when every triplet has passed stores them in ``stimuli/``
   and inserts the items in one transaction. Progress and the outcome are in ``Study.build_progress``
   (``{"kind": "import", "state": queued|running|done|failed, "done", "total", ...}``).

Limits: ``settings.PERCEPTLAB_LIMITS`` (``import_*``, ``max_compression_ratio``) and
``settings.PERCEPTLAB_MAX_UPLOAD_BYTES``.
"""

from __future__ import annotations

import logging
import re
import shutil
import uuid
import zipfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from core import storage
from core.exceptions import ApplicationError
from core.tasks import enqueue_on_commit
from distortions.imageio import pixels_sha256, write_png
from studies.images import READ_ERRORS, decode_image, image_header
from studies.models import Item, Study
from studies.services import STIMULI_DIR
from studies.targets import item_targets_sync

logger = logging.getLogger(__name__)

IMPORTS_DIR = "imports"  # media-relative and private: uploads waiting for their job, staging folders
IMPORT_FORMATS = {"PNG", "JPEG"}
MEMBER = re.compile(
    r"^(?:(?P<split>train|val)/)?(?:(?P<cat>[A-Za-z0-9_][A-Za-z0-9_.-]{0,63})/)?(?P<part>ref|p0|p1)/"
    r"(?P<stem>[^/]{1,200})\.(?:png|jpe?g)$",
    re.IGNORECASE,
)
CATEGORY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class ImportPlan:
    """What a checked archive holds: triplets (or JND pairs) by (split, category, stem), member names by
    part."""

    parts: tuple[str, ...]
    groups: dict[tuple[str, str, str], dict[str, str]]
    total_pixels: int


def _limits() -> dict:
    return settings.PERCEPTLAB_LIMITS


def _parts(study: Study) -> tuple[str, ...]:
    return ("ref", "p0", "p1") if study.kind == "2afc" else ("p0", "p1")


def _check_options(*, study: Study, split: str, category: str) -> None:
    if split not in Item.Split.values:
        raise ApplicationError(f"split must be one of {Item.Split.values}", {"field": "split"})
    if not CATEGORY.fullmatch(category or "") or category in ("sentinel", "practice"):
        raise ApplicationError(
            "category must be 1-64 letters, digits, '_', '.' or '-'", {"field": "category"}
        )
    if study.status == Study.Status.BUILDING:
        raise ApplicationError("the study is being built; import when it is done", status_code=409)
    if study.status == Study.Status.CLOSED:
        raise ApplicationError("the study is closed: it takes no new items", {"code": "closed"}, 409)


def _image_members(zf: zipfile.ZipFile, limits: dict) -> list[zipfile.ZipInfo]:
    """The archive's files, without folders and macOS/hidden clutter, within the count and size limits."""
    members = [
        m
        for m in zf.infolist()
        if not m.is_dir()
        and not m.filename.startswith("__MACOSX/")
        and not m.filename.rsplit("/", 1)[-1].startswith(".")
    ]
    if len(members) > limits["import_max_files"]:
        raise ApplicationError(
            f"too many files ({len(members)} > {limits['import_max_files']})", {"field": "archive"}
        )
    total = sum(m.file_size for m in members)
    if total > limits["import_max_total_bytes"]:
        raise ApplicationError(
            f"the archive unpacks to {total} bytes (limit {limits['import_max_total_bytes']})",
            {"field": "archive"},
        )
    return members


def _group_members(
    members: list[zipfile.ZipInfo],
    *,
    study: Study,
    parts: tuple[str, ...],
    split: str,
    category: str,
    limits: dict,
) -> dict[tuple[str, str, str], dict[str, str]]:
    """Member names by (split, category, stem) and part, from their paths alone; every group complete."""
    groups: dict = {}
    for m in members:
        match = MEMBER.match(m.filename)
        if not match:
            raise ApplicationError(
                f"unexpected file {m.filename!r}: use {'/'.join(parts)} folders of PNG/JPEG",
                {"file": m.filename},
            )
        if match["part"] not in parts:
            raise ApplicationError(
                f"{m.filename}: a {study.kind} study takes only {list(parts)} folders", {"file": m.filename}
            )
        if m.file_size > limits["import_max_file_bytes"] or (
            m.file_size > 1024 and m.file_size > max(m.compress_size, 1) * limits["max_compression_ratio"]
        ):
            raise ApplicationError(
                f"{m.filename}: too large or too compressed to be an image patch", {"file": m.filename}
            )
        key = (match["split"] or split, match["cat"] or category, match["stem"])
        if match["part"] in groups.setdefault(key, {}):
            raise ApplicationError(f"two files for {match['part']}/{match['stem']}", {"file": m.filename})
        groups[key][match["part"]] = m.filename
    if not groups:
        raise ApplicationError("the archive holds no images", {"field": "archive"})
    for key, found in groups.items():
        if set(found) != set(parts):
            raise ApplicationError(
                f"{'/'.join(key)}: needs {list(parts)}, found {sorted(found)}", {"stem": key[2]}
            )
    return groups


def _check_headers(zf: zipfile.ZipFile, groups: dict, parts: tuple[str, ...], limits: dict) -> int:
    """Read every image's header (format, width, height; no decoding): each group's images share one size
    and all of them together stay within the pixel limit. Returns the total pixel count."""
    total_pixels = 0
    for key in sorted(groups):
        sizes = set()
        for part in parts:
            name = groups[key][part]
            try:
                with zf.open(name) as stream:
                    _, w, h = image_header(
                        name,
                        stream,
                        formats=IMPORT_FORMATS,
                        max_side=limits["import_max_side"],
                        max_pixels=limits["import_max_side"] ** 2,
                    )
            except READ_ERRORS as exc:  # an encrypted or damaged member
                raise ApplicationError(
                    f"{name}: cannot be read from the zip ({exc.__class__.__name__})", {"file": name}
                ) from exc
            total_pixels += w * h
            if total_pixels > limits["import_max_total_pixels"]:
                raise ApplicationError(
                    f"{name}: the images up to this one hold more than "
                    f"{limits['import_max_total_pixels']} pixels in all",
                    {"file": name},
                )
            sizes.add((w, h))
        if len(sizes) != 1:
            raise ApplicationError(
                f"{'/'.join(key)}: images differ in size {sorted(sizes)}", {"stem": key[2]}
            )
    return total_pixels


def import_plan(*, zf: zipfile.ZipFile, study: Study, split: str, category: str) -> ImportPlan:
    """Check the zip's directory, then every image's header (format, size, pixels); decode nothing."""
    limits = _limits()
    parts = _parts(study)
    members = _image_members(zf, limits)
    groups = _group_members(members, study=study, parts=parts, split=split, category=category, limits=limits)
    total_pixels = _check_headers(zf, groups, parts, limits)
    return ImportPlan(parts=parts, groups=groups, total_pixels=total_pixels)


def _open_zip(archive) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise ApplicationError("the upload is not a zip archive", {"field": "archive"}) from exc


def _import_running(progress: dict) -> bool:
    """A queued or running import, unless it has been silent for longer than any task may run."""
    if progress.get("kind") != "import" or progress.get("state") not in ("queued", "running"):
        return False
    updated = parse_datetime(progress.get("updated_at") or "")
    return updated is None or timezone.now() - updated < timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT)


def study_import_running(*, study: Study) -> bool:
    """Whether an import into the study is queued or running (the dashboard's build panel polls while so)."""
    return _import_running(study.build_progress or {})


def _set_progress(study_id, **progress) -> dict:
    progress = {"kind": "import", **progress, "updated_at": timezone.now().isoformat()}
    Study.objects.filter(pk=study_id).update(build_progress=progress)
    return progress


def study_import_start(*, study: Study, archive, split: str = "val", category: str = "imported") -> dict:
    """Check an uploaded zip synchronously (4xx naming the bad file), keep it privately and queue the
    import job. Returns the study's new build_progress (state "queued")."""
    _check_options(study=study, split=split, category=category)
    size = getattr(archive, "size", None)
    if size is not None and size > settings.PERCEPTLAB_MAX_UPLOAD_BYTES:
        raise ApplicationError(
            f"the upload is {size} bytes; the limit is {settings.PERCEPTLAB_MAX_UPLOAD_BYTES}",
            {"field": "archive"},
            status_code=413,
        )
    with _open_zip(archive) as zf:
        plan = import_plan(zf=zf, study=study, split=split, category=category)
    rel = f"{IMPORTS_DIR}/{study.pk}/{uuid.uuid4().hex}.zip"
    storage.save_stream(rel, archive)
    try:
        with transaction.atomic():
            locked = Study.objects.select_for_update().get(pk=study.pk)  # one import at a time per study
            if _import_running(locked.build_progress):
                raise ApplicationError(
                    "an import into this study is still running; wait for it to finish",
                    {"code": "import_running"},
                    status_code=409,
                )
            progress = _set_progress(study.pk, state="queued", done=0, total=len(plan.groups))
            enqueue_on_commit("studies.study_import_items", str(study.pk), rel, split, category)
    except BaseException:
        storage.delete(rel)
        raise
    return progress


def _stage_triplet(
    zf: zipfile.ZipFile, names: dict[str, str], staging: Path, limits: dict
) -> tuple[tuple, dict]:
    """Decode one triplet, check it, write its PNGs into the staging folder; returns (pixel hashes, file
    names). The decoded images die with this call: at most one triplet is ever held."""
    images = {
        part: decode_image(
            name,
            zf.read(name),
            formats=IMPORT_FORMATS,
            max_side=limits["import_max_side"],
            max_pixels=limits["import_max_side"] ** 2,
        )
        for part, name in names.items()
    }
    shapes = {img.shape for img in images.values()}
    if len(shapes) != 1:
        raise ApplicationError(
            f"{sorted(names.values())}: images differ in size {sorted(shapes)}", {"file": min(names.values())}
        )
    hashes = tuple(pixels_sha256(images[part]) for part in names)
    return hashes, {part: write_png(images[part], staging)[0] for part in names}


def _publish(staging: Path) -> None:
    """Store staged PNGs in stimuli/ under their content-addressed names; never replace a file (a stored
    name holds the same bytes: sha256 of the file)."""
    for staged in sorted(staging.iterdir()):
        storage.save_if_absent(f"{STIMULI_DIR}/{staged.name}", staged)


def _stage_items(
    zf: zipfile.ZipFile, plan: ImportPlan, study: Study, staging: Path, on_progress
) -> tuple[list[dict], int]:
    """Stage every triplet's images (content-addressed) and return the new items' fields, and how many
    triplets were skipped as already in the study (same pixels)."""
    limits = _limits()
    total = len(plan.groups)
    known = {
        tuple(r.get("import_pixels", ()))
        for r in study.items.filter(records__has_key="import_pixels").values_list("records", flat=True)
    }
    rows, skipped = [], 0
    step = max(1, total // 100)
    for n, key in enumerate(sorted(plan.groups), start=1):
        names = {part: plan.groups[key][part] for part in plan.parts}
        hashes, files = _stage_triplet(zf, names, staging, limits)
        if hashes in known:
            skipped += 1
        else:
            known.add(hashes)
            rows.append(
                dict(
                    split=key[0],
                    category=key[1],
                    role=Item.Role.TEST,
                    ref_image=f"{STIMULI_DIR}/{files.get('ref', files['p0'])}",
                    p0_image=f"{STIMULI_DIR}/{files['p0']}",
                    p1_image=f"{STIMULI_DIR}/{files['p1']}",
                    records={
                        "source": "import",
                        "stem": key[2],
                        "files": names,
                        "import_pixels": list(hashes),
                    },
                )
            )
        if n % step == 0 and n < total:
            _set_progress(study.pk, state="running", done=n, total=total)
            if on_progress is not None:
                on_progress(n, total)
    return rows, skipped


def study_import_items(
    *, study: Study, upload: str, split: str = "val", category: str = "imported", on_progress=None
) -> dict:
    """The import job: add test items from a checked upload (its stored name), one triplet at a time, all
    or nothing. Items already in the study (same pixels) are skipped. Records the outcome in build_progress
    and returns it."""
    local = storage.local_path(upload)
    staging = local.with_name(local.stem + ".staged")
    try:
        with _open_zip(storage.local_copy(upload, immutable=True)) as zf:  # a random name, written once
            plan = import_plan(zf=zf, study=study, split=split, category=category)  # the same checks, again
            total = len(plan.groups)
            _set_progress(study.pk, state="running", done=0, total=total)
            staging.mkdir(parents=True, exist_ok=True)
            rows, skipped = _stage_items(zf, plan, study, staging, on_progress)
        with transaction.atomic():
            locked = Study.objects.select_for_update().filter(pk=study.pk).first()
            if locked is None or locked.status == Study.Status.CLOSED:  # closed while the job staged
                raise ApplicationError("the study was closed during the import: nothing was added")
            last = study.items.aggregate(m=Max("index"))["m"]
            start = 0 if last is None else last + 1
            Item.objects.bulk_create(
                [Item(study=study, index=start + n, **row) for n, row in enumerate(rows)], batch_size=500
            )
            item_targets_sync(study=study)
            _publish(staging)  # last: a failure here rolls the rows back
            result = _set_progress(
                study.pk,
                state="done",
                done=total,
                total=total,
                imported=len(rows),
                skipped_duplicates=skipped,
            )
        logger.info("study %s: imported %d items (%d duplicates skipped)", study.pk, len(rows), skipped)
        return result
    except ApplicationError as exc:
        return _set_progress(
            study.pk,
            state="failed",
            error=exc.message,
            **{k: v for k, v in exc.extra.items() if k in ("file", "stem")},
        )
    except BaseException as exc:
        _set_progress(study.pk, state="failed", error=f"the import job failed: {exc.__class__.__name__}")
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        storage.delete(upload)


def upload_path(rel: str) -> str | None:
    """The stored name of the private upload a queued job names, or None if the name is not one of ours."""
    if not re.fullmatch(rf"{IMPORTS_DIR}/[0-9a-f-]{{36}}/[0-9a-f]{{32}}\.zip", rel or ""):
        return None
    return rel
