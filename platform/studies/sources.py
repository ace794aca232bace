"""Where a study's reference photographs come from, safely in front of a public crowd of researchers.

A build config (`Study.build_config`, see distortions.dataset) names one of two sources:

- `{"type": "skimage"}` (optionally `"names": [...]`): the photographs bundled with scikit-image;
- `{"type": "upload", "id": "<uuid>"}`: a source photo set its researcher uploaded (`POST /api/v1/sources/`).

The engine's `folder` and `files` sources read the server's filesystem: the platform refuses them (and
anything else) with one message that never depends on a path, so nothing about the server's files leaks.
An upload id resolves to the set's stored files here, just before the engine runs (the engine stays free
of Django); another researcher's set id gets the same answer as one that does not exist. Every count and
size in a build config is capped by settings.PERCEPTLAB_BUILD_LIMITS; errors name the field and the cap.

Source photo sets come from a zip of PNG/JPEG photographs, checked like a hostile archive (archive size,
member count, member and total sizes, compression ratio, format by content, pixel count read from the
header before any decoding, smallest side), fully decoded once to prove the engine can read them, then
stored privately as sources/<set id>/<sha256>.<ext> (core.storage; never served: core.views.media serves
stimuli/ only). All or nothing: a refused archive leaves no file and no row.

Checking a config names the set's stored files without reading one (a study create on the web fetches no
photo). `source_photos` gives the engine readable files only where it draws: the stored files themselves
on a local storage, else copies of just the photos it needs in a temporary folder removed afterwards, so no
machine keeps a researcher's photos after the set is deleted.
"""

from __future__ import annotations

import hashlib
import io
import math
import tempfile
import uuid
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet

from core import storage
from core.exceptions import ApplicationError
from studies.models import SourcePhotoSet, Study

SOURCES_DIR = "sources"  # media-relative, private
SOURCE_FORMATS = {
    "PNG": "png",
    "JPEG": "jpg",
    "MPO": "jpg",
}  # MPO: a camera JPEG with extra frames (the first is used)
REFUSED_SOURCE = (
    "build_config.source must be {'type': 'skimage'} (optionally with 'names') or "
    "{'type': 'upload', 'id': '<source photo set id>'} (upload photos with POST /api/v1/sources/)"
)
UNKNOWN_SET = "build_config.source.id: no such source photo set"
SECTION_KEYS = {
    "sentinels": {"n", "light_severity", "heavy_severity", "identical_fraction"},
    "practice": {"n"},
    "jnd": {"identical_fraction"},
    "composition": {"p_compose", "max_ops"},
}
FRACTIONS = {
    ("flat_threshold",),
    ("sentinels", "light_severity"),
    ("sentinels", "heavy_severity"),
    ("sentinels", "identical_fraction"),
    ("jnd", "identical_fraction"),
    ("composition", "p_compose"),
}


def _fail(message: str, field: str, **extra):
    raise ApplicationError(message, {"field": field, **extra})


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _count(value, field: str, low: int, cap: int) -> int:
    if not _is_int(value) or not low <= value <= cap:
        _fail(f"{field} must be an integer in {low}..{cap}, got {value!r}", field, cap=cap)
    return value


# --- build configs -----------------------------------------------------------------------------------------
def build_config_check(*, build_config: dict, owner) -> dict:
    """Check a build config against the source rules and the caps; return the config the engine runs
    (an upload source resolved to its stored files). Raises ApplicationError naming the field."""
    limits = settings.PERCEPTLAB_BUILD_LIMITS
    if not isinstance(build_config, dict):
        _fail("build_config must be a JSON object", "build_config")
    c = build_config
    _count(c.get("n_items", 100), "build_config.n_items", 0, limits["n_items"])
    _count(c.get("patch_size", 64), "build_config.patch_size", 16, limits["patch_size"])
    _count(c.get("seed", 0), "build_config.seed", 0, limits["seed"])
    for section, keys in SECTION_KEYS.items():
        value = c.get(section, {})
        if not isinstance(value, dict) or set(value) - keys:
            _fail(
                f"build_config.{section} must be an object with keys {sorted(keys)}",
                f"build_config.{section}",
            )
    _count(c.get("sentinels", {}).get("n", 0), "build_config.sentinels.n", 0, limits["sentinels"])
    _count(c.get("practice", {}).get("n", 0), "build_config.practice.n", 0, limits["practice"])
    _count(
        c.get("composition", {}).get("max_ops", 2), "build_config.composition.max_ops", 1, limits["max_ops"]
    )
    for path in FRACTIONS:
        value = c.get(path[0], {}) if len(path) == 2 else c
        if path[-1] in value and (not _is_number(value[path[-1]]) or not 0 <= value[path[-1]] <= 1):
            field = "build_config." + ".".join(path)
            _fail(f"{field} must be a number in [0, 1], got {value[path[-1]]!r}", field)
    names = c.get("distortions")
    if names is not None and (
        not isinstance(names, list)
        or not 1 <= len(names) <= limits["distortions"]
        or not all(isinstance(n, str) for n in names)
    ):
        _fail(
            f"build_config.distortions must be a list of 1..{limits['distortions']} distortion names",
            "build_config.distortions",
            cap=limits["distortions"],
        )
    severity = c.get("severity_range", [0.0, 1.0])
    if (
        not isinstance(severity, list)
        or len(severity) != 2
        or not all(_is_number(s) for s in severity)
        or not 0 <= severity[0] <= severity[1] <= 1
    ):
        _fail(
            "build_config.severity_range must be [low, high] with 0 <= low <= high <= 1",
            "build_config.severity_range",
        )
    for key in ("families", "splits"):
        value = c.get(key, {})
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and _is_number(v) and 0 <= v <= 1000 for k, v in value.items()
        ):
            _fail(f"build_config.{key} must map names to numbers in 0..1000", f"build_config.{key}")
    return {
        **c,
        "source": _engine_source(c.get("source", {"type": "skimage"}), owner, c.get("patch_size", 64)),
    }


def build_config_check_cnn(*, engine_config) -> None:
    """CNN-autoencoder distortions cost a model run each: cap the expected number of CNN test items
    (n_items x the CNN family's share of first ops). `engine_config` is a validated
    distortions.StudyConfig."""
    from distortions import registry

    sampler = engine_config.sampler()
    share = sum(
        float(p) for n, p in zip(sampler.names, sampler.probs, strict=True) if registry.get(n).family == "cnn"
    )
    cap = settings.PERCEPTLAB_BUILD_LIMITS["cnn_items"]
    if share * engine_config.n_items > cap:
        _fail(
            f"build_config: at most {cap} CNN-distorted items (n_items x the CNN share, "
            f"{engine_config.n_items} x {share:.2f} here)",
            "build_config.families",
            cap=cap,
        )


def _engine_source(source, owner, patch_size) -> dict:
    from distortions.sources import SKIMAGE_PHOTOS

    kind = source.get("type") if isinstance(source, dict) else None
    if kind == "skimage" and set(source) <= {"type", "names"}:
        names = source.get("names")
        if names is not None and (
            not isinstance(names, list)
            or not all(isinstance(n, str) for n in names)
            or len(set(names)) != len(names)
            or not 1 <= len(names) <= len(SKIMAGE_PHOTOS)
        ):
            _fail(
                f"build_config.source.names must list distinct bundled photographs: {list(SKIMAGE_PHOTOS)}",
                "build_config.source.names",
            )
        return dict(source)
    if kind == "upload" and set(source) == {"type", "id"}:
        photo_set = source_set_for(owner=owner, set_id=source["id"])
        if photo_set is None:
            _fail(UNKNOWN_SET, "build_config.source.id")
        if _is_int(patch_size) and patch_size > photo_set.min_side:
            _fail(
                f"build_config.patch_size {patch_size} is larger than the smallest photo of this source set "
                f"({photo_set.min_side} pixels)",
                "build_config.patch_size",
                cap=photo_set.min_side,
            )
        folder = _set_dir(photo_set.pk)
        names = [f["file"] for f in photo_set.files]
        if not names or not set(names) <= set(storage.listdir(folder)):  # one listing, no photo read
            _fail(
                "build_config.source.id: this source photo set is incomplete; upload it again",
                "build_config.source.id",
            )
        return {"type": "files", "paths": [f"{folder}/{name}" for name in names]}  # stored names
    _fail(REFUSED_SOURCE, "build_config.source")


@contextmanager
def source_photos(source: dict, limit: int | None = None) -> Iterator[dict]:
    """The engine source for a checked config's `source`, with files the engine can read while the block
    runs. A checked "files" source names an upload set's stored photos: on a local storage they are read
    in place; else the first `limit` (all by default) are copied to a temporary folder, removed when the
    block ends. File names are kept (the engine names a photo by its file name: the same items anywhere)."""
    if source.get("type") != "files":
        yield source
        return
    names = source["paths"][:limit]
    if storage.is_local():
        yield {"type": "files", "paths": [str(storage.local_path(name)) for name in names]}
        return
    with tempfile.TemporaryDirectory(prefix="perceptlab-photos-") as folder:
        paths = [Path(folder) / name.rsplit("/", 1)[-1] for name in names]
        for name, path in zip(names, paths, strict=True):
            storage.download(name, path)
        yield {"type": "files", "paths": [str(p) for p in paths]}


def engine_build_config(*, study: Study) -> dict:
    """The engine config a study builds from: its build config checked again (settings or sets may have
    changed since it was created) and its upload source resolved to files."""
    return build_config_check(
        build_config={k: v for k, v in study.build_config.items() if k != "kind"}, owner=study.owner
    ) | {"kind": study.kind}


# --- source photo sets --------------------------------------------------------------------------------------
def _set_dir(set_id) -> str:
    return f"{SOURCES_DIR}/{set_id}"


def source_set_list_for(*, user) -> QuerySet[SourcePhotoSet]:
    return SourcePhotoSet.objects.filter(owner=user)


def source_set_for(*, owner, set_id) -> SourcePhotoSet | None:
    """The owner's set, or None for a malformed id, another researcher's set or none at all alike."""
    try:
        pk = uuid.UUID(str(set_id))
    except (ValueError, TypeError, AttributeError):
        return None
    if owner is None or not getattr(owner, "pk", None):
        return None
    return SourcePhotoSet.objects.filter(owner=owner, pk=pk).first()


def _archive_fail(message: str, member: str | None = None, status_code: int = 400):
    raise ApplicationError(
        message, {"field": "archive", **({"file": member} if member else {})}, status_code=status_code
    )


def _check_photo(name: str, data: bytes, limits: dict) -> tuple[str, int, int]:
    """Format by content and pixel count from the header, before decoding; then decode once, as the
    engine will. Returns (format extension, width, height)."""
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                if img.format not in SOURCE_FORMATS:
                    _archive_fail(
                        f"{name}: {img.format or 'unknown'} files are not accepted (PNG or JPEG photos only)",
                        name,
                    )
                w, h = img.size
                if w * h > limits["max_pixels"]:
                    _archive_fail(f"{name}: {w}x{h} is more than {limits['max_pixels']} pixels", name)
                if min(w, h) < limits["min_side"]:
                    _archive_fail(f"{name}: {w}x{h} is smaller than {limits['min_side']} pixels a side", name)
                img.convert(
                    "RGB"
                )  # decodes every pixel: truncated or corrupt files fail here, not in a build
                return SOURCE_FORMATS[img.format], w, h
    except ApplicationError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ApplicationError(
            f"{name}: too many pixels (a decompression bomb?)", {"field": "archive", "file": name}
        ) from exc
    except (OSError, ValueError, SyntaxError, EOFError) as exc:  # PIL's many ways of saying "not an image"
        raise ApplicationError(
            f"{name}: not a readable PNG or JPEG photo ({exc.__class__.__name__})",
            {"field": "archive", "file": name},
        ) from exc


def source_set_create(*, owner, name: str, archive) -> SourcePhotoSet:
    """Store an uploaded zip of photographs as the owner's source photo set (checks in the module
    docstring)."""
    limits = settings.PERCEPTLAB_SOURCE_LIMITS
    if source_set_list_for(user=owner).count() >= limits["max_sets_per_owner"]:
        raise ApplicationError(
            f"at most {limits['max_sets_per_owner']} source photo sets per researcher; delete one first",
            {"field": "archive", "cap": limits["max_sets_per_owner"]},
            status_code=409,
        )
    size = getattr(archive, "size", None)
    if size is not None and size > limits["max_archive_bytes"]:
        _archive_fail(f"the archive is {size} bytes (limit {limits['max_archive_bytes']})", status_code=413)
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise ApplicationError("the upload is not a zip archive", {"field": "archive"}) from exc
    set_id = uuid.uuid4()
    try:
        with zf:
            files = _store_members(zf, _set_dir(set_id), limits)
        digest = hashlib.sha256("\n".join(sorted(f["file"] for f in files)).encode()).hexdigest()
        photo_set = SourcePhotoSet(
            id=set_id,
            owner=owner,
            name=name,
            files=files,
            n_images=len(files),
            min_side=min(min(f["width"], f["height"]) for f in files),
            total_bytes=sum(f["bytes"] for f in files),
            digest=digest,
        )
        photo_set.full_clean()
        photo_set.save()
    except BaseException:
        storage.delete_tree(_set_dir(set_id))  # nothing names this new folder: no half set is left
        raise
    return photo_set


def _store_members(zf: zipfile.ZipFile, folder: str, limits: dict) -> list[dict]:
    members = [
        m
        for m in zf.infolist()
        if not m.is_dir()
        and not m.filename.startswith("__MACOSX/")
        and not m.filename.rsplit("/", 1)[-1].startswith(".")
    ]
    if not members:
        _archive_fail("the archive holds no photos")
    if len(members) > limits["max_files"]:
        _archive_fail(f"too many files ({len(members)} > {limits['max_files']})")
    total = sum(m.file_size for m in members)
    if total > limits["max_total_bytes"]:
        _archive_fail(f"the archive unpacks to {total} bytes (limit {limits['max_total_bytes']})")
    for m in members:  # every header first: a bomb is refused before anything is decompressed
        label = m.filename[-200:]
        if m.file_size > limits["max_file_bytes"]:
            _archive_fail(f"{label}: {m.file_size} bytes (limit {limits['max_file_bytes']} a photo)", label)
        if m.file_size and (
            not m.compress_size or m.file_size / m.compress_size > limits["max_compression_ratio"]
        ):
            _archive_fail(
                f"{label}: compressed {m.file_size // max(m.compress_size, 1)}:1 "
                f"(limit {limits['max_compression_ratio']}:1; a zip bomb?)",
                label,
            )
    files: dict[str, dict] = {}
    pixels = 0
    for m in members:
        label = m.filename[-200:]
        try:
            with zf.open(m) as handle:
                data = handle.read(limits["max_file_bytes"] + 1)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError, RuntimeError) as exc:
            raise ApplicationError(
                f"{label}: cannot be unpacked ({exc.__class__.__name__})", {"field": "archive", "file": label}
            ) from exc
        if len(data) > limits["max_file_bytes"]:
            _archive_fail(f"{label}: larger than its header says", label)
        ext, w, h = _check_photo(label, data, limits)
        pixels += w * h
        if pixels > limits["max_total_pixels"]:
            _archive_fail(f"the photos hold more than {limits['max_total_pixels']} pixels in all", label)
        sha = hashlib.sha256(data).hexdigest()
        stored = f"{sha}.{ext}"
        if stored in files:
            continue  # the same photo twice: stored once
        storage.save_bytes(f"{folder}/{stored}", data)
        files[stored] = {"file": stored, "name": label, "width": w, "height": h, "bytes": len(data)}
    return sorted(files.values(), key=lambda f: f["name"])


def source_set_delete(*, photo_set: SourcePhotoSet) -> None:
    """Delete a set and its files, unless a study still waiting for its build names it (409)."""
    folder = _set_dir(photo_set.pk)
    with transaction.atomic():
        pending = Study.objects.filter(
            owner_id=photo_set.owner_id,
            status__in=(Study.Status.DRAFT, Study.Status.BUILDING),
            build_config__source__id=str(photo_set.pk),
        )
        if pending.exists():
            raise ApplicationError(
                "a study whose stimuli are not built yet uses this source photo set",
                {"studies": [str(pk) for pk in pending.values_list("pk", flat=True)]},
                status_code=409,
            )
        photo_set.delete()
    storage.delete_tree(folder)
