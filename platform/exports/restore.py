"""Round trips: the ``restore/`` part of an export holds every row of the study (study, items, workers,
assignments, trials, judgments: every stored field) and every image it references, so that
`study_restore` rebuilds the study in another database with identical content. An export of the restored
study is byte-identical to the export it came from (tested across PostgreSQL and SQLite).

Published as exports publish them (exports.privacy): judgments' client timestamps relative to their HIT's
first one, and no user agent unless the export asks for it.

Left out on purpose: assignment tokens and trial public ids (credentials and opaque handles of annotators;
fresh ones are drawn on import), `updated_at` (bookkeeping), the study's owner (the importer owns the copy),
and what a study derives (exports, trained models, feature caches: retrain and re-export instead).

Archive layout::

    restore/manifest.json        format, table row counts and sha256 of every restore/ file
    restore/<table>.jsonl        one JSON object per row, fields by attname (FKs as <name>_id)
    restore/media/<path>         every image an item references, under its media-relative path
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import zipfile
from datetime import datetime
from pathlib import Path
from uuid import UUID

from django.conf import settings
from django.db import models, transaction

from core.exceptions import ApplicationError
from exports.privacy import hit_origins, judgment_row_published
from judgments.models import Assignment, Judgment, Trial, Worker
from studies.models import Item, Study

logger = logging.getLogger(__name__)
FORMAT = "perceptlab-restore/1"
SKIPPED = {"updated_at", "token", "public_id", "owner_id"}
# (table, model, ordering): the order rows are written and restored in
TABLES = (
    ("items", Item, ("index",)),
    ("workers", Worker, ("id",)),
    ("assignments", Assignment, ("created_at", "id")),
    ("trials", Trial, ("assignment_id", "position")),
    ("judgments", Judgment, ("created_at", "id")),
)
MEDIA_PATH = re.compile(r"^[A-Za-z0-9_-]{1,64}/[A-Za-z0-9_.-]{1,200}$")
LIMITS = {"max_files": 500_000, "max_total_bytes": 8 * 1024**3, "max_file_bytes": 8 * 1024**2, "max_compression_ratio": 200}


def _fields(model) -> list[models.Field]:
    return [f for f in model._meta.concrete_fields if f.attname not in SKIPPED]


def _cell(value):
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    return value


def _parse(field: models.Field, value):
    if value is None:
        return None
    target = field.target_field if field.is_relation else field
    return target.to_python(value)


def dump_rows(study: Study, *, include_user_agent: bool = False) -> dict[str, list[dict]]:
    """Every row of the study, table by table (call inside the export's snapshot transaction)."""
    study_fields = [f.attname for f in _fields(Study)]
    out = {"study": [{k: _cell(v) for k, v in Study.objects.filter(pk=study.pk).values(*study_fields).get().items()}]}
    scopes = {
        "items": {"study": study},
        "workers": {"assignments__study": study},
        "assignments": {"study": study},
        "trials": {"assignment__study": study},
        "judgments": {"assignment__study": study},
    }
    for table, model, ordering in TABLES:
        names = [f.attname for f in _fields(model)]
        rows = model.objects.filter(**scopes[table]).distinct().order_by(*ordering).values(*names)
        out[table] = [{k: _cell(v) for k, v in row.items()} for row in rows]
    origins = hit_origins(out["judgments"])
    out["judgments"] = [judgment_row_published(row, origins, include_user_agent=include_user_agent) for row in out["judgments"]]
    return out


def media_paths(items: list[dict]) -> list[str]:
    return sorted({row[key] for row in items for key in ("ref_image", "p0_image", "p1_image") if row.get(key)})


def write_restore(zf_add, rows: dict[str, list[dict]]) -> dict:
    """Add restore/ to an archive being written (zf_add(name, data, compress)); returns the manifest."""
    digests, counts = {}, {}
    for table in ("study", *(t for t, _, _ in TABLES)):
        data = "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows[table]).encode()
        name = f"restore/{table}.jsonl"
        zf_add(name, data, True)
        digests[name], counts[table] = hashlib.sha256(data).hexdigest(), len(rows[table])
    media = Path(settings.MEDIA_ROOT)
    for rel in media_paths(rows["items"]):
        data = (media / rel).read_bytes()
        name = f"restore/media/{rel}"
        zf_add(name, data, False)
        digests[name] = hashlib.sha256(data).hexdigest()
    manifest = {"format": FORMAT, "rows": counts, "files": digests}
    zf_add("restore/manifest.json", json.dumps(manifest, indent=1, sort_keys=True).encode(), True)
    return manifest


def _read_checked(zf: zipfile.ZipFile) -> tuple[dict, dict[str, bytes]]:
    members = {m.filename: m for m in zf.infolist() if m.filename.startswith("restore/") and not m.is_dir()}
    if "restore/manifest.json" not in members:
        raise ApplicationError("this archive has no restore/ section (exports before format perceptlab-restore/1 "
                               "cannot be restored)", {"field": "archive"})  # fmt: skip
    if len(members) > LIMITS["max_files"] or sum(m.file_size for m in members.values()) > LIMITS["max_total_bytes"]:
        raise ApplicationError("the archive is too large to restore", {"field": "archive"})
    manifest = json.loads(zf.read("restore/manifest.json"))
    if manifest.get("format") != FORMAT:
        raise ApplicationError(f"unknown restore format {manifest.get('format')!r} (this version reads {FORMAT})")
    files = {}
    for name, digest in manifest["files"].items():
        member = members.get(name)
        if member is None:
            raise ApplicationError(f"{name} is listed in the manifest but missing", {"file": name})
        if member.file_size > LIMITS["max_file_bytes"] * (64 if name.endswith(".jsonl") else 1) or (
            member.compress_size and member.file_size / member.compress_size > LIMITS["max_compression_ratio"]
        ):
            raise ApplicationError(f"{name}: too large or too compressed", {"file": name})
        data = zf.read(member)
        if hashlib.sha256(data).hexdigest() != digest:
            raise ApplicationError(f"{name}: content does not match its sha256 in the manifest", {"file": name})
        files[name] = data
    extra = set(members) - set(manifest["files"]) - {"restore/manifest.json"}
    if extra:
        raise ApplicationError(f"files not in the manifest: {sorted(extra)[:5]}", {"field": "archive"})
    return manifest, files


def _objects(model, rows: list[dict], remap: dict | None = None) -> list:
    fields = _fields(model)
    out = []
    for row in rows:
        values = {}
        for f in fields:
            value = _parse(f, row.get(f.attname))
            if remap and f.attname in remap:
                value = remap[f.attname].get(value, value)
            values[f.attname] = value
        out.append(model(**values))
    return out


def _create(model, objs: list) -> None:
    recorded = [obj.created_at for obj in objs]
    model.objects.bulk_create(objs, batch_size=500)
    # bulk_create stamps auto_now_add fields with "now"; put the recorded creation times back
    for obj, created_at in zip(objs, recorded, strict=True):
        obj.created_at = created_at
    model.objects.bulk_update(objs, ["created_at"], batch_size=500)


def study_restore(*, archive, owner=None) -> Study:
    """Rebuild a study from an export's restore/ section, all or nothing. The study keeps its id; a
    database that already holds it refuses the import (409)."""
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ApplicationError("not a zip archive", {"field": "archive"}) from exc
    with zf:
        manifest, files = _read_checked(zf)
    tables = {name[len("restore/"):-len(".jsonl")]: [json.loads(line) for line in data.splitlines()]
              for name, data in files.items() if name.endswith(".jsonl")}  # fmt: skip
    for table in ("study", *(t for t, _, _ in TABLES)):
        if len(tables.get(table, ())) != manifest["rows"].get(table):
            raise ApplicationError(f"restore/{table}.jsonl does not hold {manifest['rows'].get(table)} rows")
    (study_row,) = tables["study"]
    if Study.objects.filter(pk=study_row["id"]).exists():
        raise ApplicationError(f"study {study_row['id']} is already in this database", status_code=409)
    media = Path(settings.MEDIA_ROOT)
    for name, data in files.items():
        if name.startswith("restore/media/"):
            rel = name[len("restore/media/"):]
            if not MEDIA_PATH.match(rel) or ".." in rel:
                raise ApplicationError(f"unexpected media path {rel!r}", {"file": name})
            path = media / rel
            if not path.exists() or path.read_bytes() != data:  # content-addressed: an equal file is the same image
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(path.name + ".part")
                tmp.write_bytes(data)
                tmp.replace(path)
    with transaction.atomic():
        (study,) = _objects(Study, [study_row])
        study.owner = owner
        created_at = study.created_at
        study.save(force_insert=True)
        Study.objects.filter(pk=study.pk).update(created_at=created_at)
        study.created_at = created_at
        _create(Item, _objects(Item, tables["items"]))
        # workers are shared by studies: reuse a known identity (platform + hash), create the others
        worker_ids = {}
        new = []
        for w in _objects(Worker, tables["workers"]):
            known = Worker.objects.filter(platform=w.platform, external_hash=w.external_hash).first()
            if known is not None:
                worker_ids[w.pk] = known.pk
            else:
                new.append(w)
        _create(Worker, new)
        remap = {"worker_id": worker_ids}
        _create(Assignment, _objects(Assignment, tables["assignments"], remap))
        _create(Trial, _objects(Trial, tables["trials"], remap))
        _create(Judgment, _objects(Judgment, tables["judgments"], remap))
    logger.info("restored study %s: %s", study.pk, manifest["rows"])
    return study
