"""The new-study form's live preview: a few sample triplets (2AFC) or pairs (JND) drawn by the distortion
engine for the options on the form, before anything is saved or paid for.

The options go through the same checks as study_create (studies.services.study_build_config_check), then
distortions.StudyBuilder draws the study's first test items (the build's own seed and item indexes, so the
preview shows exactly the items the build will make). Whatever the options, the work stays small: at most
PREVIEW_MAX_ITEMS items, never a whole study; an uploaded photo set contributes its first
PREVIEW_MAX_PHOTOS photos; the loaded photos are kept (a few sources) so a refresh only draws and encodes.
"""

from __future__ import annotations

import base64
import io
import json
import threading
from collections import OrderedDict

import numpy as np

from core.exceptions import ApplicationError
from distortions.dataset import StudyBuilder
from distortions.errors import DistortionError
from distortions.sources import PatchSource, source_from_dict
from studies.services import study_build_config_check
from studies.sources import source_photos

PREVIEW_MAX_ITEMS = 4
PREVIEW_MAX_PHOTOS = 4  # of an uploaded source set (its first ones; a photo may have 16 megapixels)
_SOURCES_KEPT_BYTES = 256 * 1024 * 1024  # decoded photos kept between previews (the newest source always)
_sources: OrderedDict[str, PatchSource] = OrderedDict()
_sources_lock = threading.Lock()


def _source(spec: dict) -> PatchSource:
    """The loaded photo source for an engine source spec; the most recent ones are kept, up to
    _SOURCES_KEPT_BYTES of pixels (an upload set's stored files are content-addressed, so a spec always names
    the same pixels). `spec` names stored photos; only the ones it lists are read."""
    key = json.dumps(spec, sort_keys=True)
    with _sources_lock:
        if key in _sources:
            _sources.move_to_end(key)
            return _sources[key]
    with source_photos(spec) as photos:  # an upload set's photos copied only while they load
        source = source_from_dict(photos)
        source.images  # noqa: B018  (load the photos once, here)
    with _sources_lock:
        _sources[key] = source
        while len(_sources) > 1 and sum(_nbytes(s) for s in _sources.values()) > _SOURCES_KEPT_BYTES:
            _sources.popitem(last=False)
    return source


def _nbytes(source: PatchSource) -> int:
    return sum(image.image.nbytes for image in source.images)


def _png_data_uri(image: np.ndarray) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def ops_words(record: dict | None) -> str:
    """A distorted patch's chain in words: 'gaussian_blur 0.30 then jpeg 0.85'; 'no distortion' for none."""
    if not record:
        return "no distortion (identical to the reference)"
    return " then ".join(
        f"{op['name']} {float(op['params'].get('severity', 0.0)):.2f}" for op in record.get("ops", [])
    )


def study_preview(*, kind: str, build_config: dict, owner, n: int = PREVIEW_MAX_ITEMS) -> dict:
    """Sample items for a build config: {"items": [{"images": [(label, data URI)], "caption", "category"}],
    "patch_size", "capped": [what the preview left out]}. Raises ApplicationError (naming the field) for
    options the study itself would refuse."""
    from studies.services import _register_cnn_pool  # the CNN family's pool, when one is trained

    config = study_build_config_check(kind=kind, build_config=build_config, owner=owner)
    capped = []
    spec = dict(config.source)
    if spec.get("type") == "files" and len(spec.get("paths", [])) > PREVIEW_MAX_PHOTOS:
        spec["paths"] = spec["paths"][:PREVIEW_MAX_PHOTOS]
        capped.append(f"patches come from the set's first {PREVIEW_MAX_PHOTOS} photos only")
    n = max(0, min(int(n), PREVIEW_MAX_ITEMS, config.n_items))
    first = config.n_practice + config.n_sentinels  # the first test item's index (StudyBuilder.role_of)
    if config.n_items > n:
        capped.append(f"{n} of {config.n_items} items shown")
    _register_cnn_pool()
    try:
        builder = StudyBuilder(config)
        builder.source = _source(spec)
        entries = [builder.build_item(index) for index in range(first, first + n)]
    except DistortionError as exc:  # e.g. unreadable photos: the build would fail the same way
        raise ApplicationError(
            f"the engine cannot draw these options: {exc}", {"field": "build_config"}
        ) from exc
    items = []
    for entry in entries:
        images, records = entry["_images"], entry["records"]
        if kind == "2afc":
            shown = [("reference", images["ref"]), ("A", images["p0"]), ("B", images["p1"])]
            caption = f"A: {ops_words(records['p0'])} · B: {ops_words(records['p1'])}"
        else:
            shown = [("reference", images["p0"]), ("compared", images["p1"])]
            caption = f"compared: {ops_words(records['p1'])}"
        items.append(
            {
                "index": entry["index"],
                "split": entry["split"],
                "category": entry["category"],
                "caption": caption,
                "ops": [op["name"] for r in records.values() if r for op in r["ops"]],
                "images": [(label, _png_data_uri(image)) for label, image in shown],
            }
        )
    return {"items": items, "patch_size": config.patch_size, "capped": capped}
