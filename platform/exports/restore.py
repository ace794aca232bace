"""Round trips: the ``restore/`` part of an export holds every row of the study (study, items, workers,
assignments, trials, judgments: every stored field) and every image it references, so that
`study_restore` rebuilds the study in another database with identical content. An export of the restored
study is byte-identical to the export it came from (tested across PostgreSQL and SQLite).

Published as exports publish them (judgments.privacy): judgments' client timestamps relative to their HIT's
first one, and no user agent unless the export asks for it.

Left out on purpose: assignment tokens and trial public ids (credentials and opaque handles of annotators;
fresh ones are drawn on import), the client-address hash of an assignment (abuse caps only), `updated_at`
(bookkeeping), the study's owner (the importer owns the copy), and what a study derives (exports, trained
models, feature caches: retrain and re-export instead).

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
from uuid import UUID

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, models, transaction

from core import storage
from core.exceptions import ApplicationError
from core.stimuli import STIMULUS_PATH
from exports.archive import member_add, member_add_file, member_add_lines
from judgments import tallies
from judgments.models import Assignment, Judgment, Trial, Worker, WorkerReview
from judgments.privacy import judgment_row_published
from judgments.stopping import item_counts_fill
from studies.collection import collection_config, votes_range
from studies.images import decode_image
from studies.models import Item, Study

logger = logging.getLogger(__name__)
FORMAT = "perceptlab-restore/1"
# client_hash: a salted hash of an annotator's address, for this deployment's abuse caps only; never
# published.
# decided_by_id: the researcher account that approved or rejected a worker, a user of this deployment only
# (the decision, its reason and time travel).
SKIPPED = {"updated_at", "token", "public_id", "owner_id", "client_hash", "decided_by_id"}
# (table, model, ordering): the order rows are written and restored in
TABLES = (
    ("items", Item, ("index",)),
    ("workers", Worker, ("id",)),
    ("assignments", Assignment, ("created_at", "id")),
    ("trials", Trial, ("assignment_id", "position")),
    ("judgments", Judgment, ("created_at", "id")),
    ("reviews", WorkerReview, ("created_at", "id")),
)
# tables a perceptlab-restore/1 archive may lack (written before they existed): restored as empty
OPTIONAL_TABLES = {"reviews"}
# fields an archive may lack (written before they existed): their defaults; adaptive collection's item
# counts are then derived again (judgments.stopping.item_counts_fill), and the HITs' tallies always are
ADDED_FIELDS = {
    "items": {"active", "propensity", "sampler_version", "score", "n_target", "n_ones", "draw"},
    "assignments": set(tallies.FIELDS.values()),  # counted again from the judgments once written
    "study": {"train_budget"},
}
IMAGE_FIELDS = ("ref_image", "p0_image", "p1_image")
TABLE_FILE = re.compile(r"restore/(?P<table>study|items|workers|assignments|trials|judgments|reviews)\.jsonl")
MEDIA_PREFIX = "restore/media/"  # + a stimulus path (core.stimuli): the only image path a row may name


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


ROWS_PER_FETCH = 2000  # rows an export reads from the database at a time (never a whole table)


def hit_origins_of(study: Study) -> dict[str, float]:
    """assignment id (str) -> its HIT's earliest client timestamp (judgments.privacy.hit_origins), from one
    GROUP BY over the study's judgments, practice included: client times are published relative to it."""
    origins = {}
    for a, shown, answered in (
        Judgment.objects.filter(assignment__study=study)
        .order_by()
        .values("assignment_id")
        .annotate(s=models.Min("client_shown_at"), a=models.Min("client_answered_at"))
        .values_list("assignment_id", "s", "a")
    ):
        first = min((t for t in (shown, answered) if t is not None), default=None)
        if first is not None:
            origins[str(a)] = first
    return origins


def dump_rows(study: Study, *, origins: dict, include_user_agent: bool = False) -> dict[str, tuple]:
    """Every row of the study, table by table, as (row count, rows): the rows are read ROWS_PER_FETCH at a
    time while they are written (call inside the export's snapshot transaction; `origins`:
    hit_origins_of)."""
    study_fields = [f.attname for f in _fields(Study)]
    out = {
        "study": (
            1,
            [{k: _cell(v) for k, v in Study.objects.filter(pk=study.pk).values(*study_fields).get().items()}],
        )
    }
    scopes = {
        "items": {"study": study},
        "workers": {"assignments__study": study},
        "assignments": {"study": study},
        "trials": {"assignment__study": study},
        "judgments": {"assignment__study": study},
        "reviews": {"study": study},
    }
    for table, model, ordering in TABLES:
        names = [f.attname for f in _fields(model)]
        query = model.objects.filter(**scopes[table]).distinct()
        rows = (
            {k: _cell(v) for k, v in row.items()}
            for row in query.order_by(*ordering).values(*names).iterator(chunk_size=ROWS_PER_FETCH)
        )
        if table == "judgments":
            rows = (
                judgment_row_published(row, origins, include_user_agent=include_user_agent) for row in rows
            )
        out[table] = (query.count(), rows)
    return out


def _media_rel(name: str) -> str | None:
    """The stimulus path an archive member holds (restore/media/stimuli/<sha256>.png), or None."""
    rel = name.removeprefix(MEDIA_PREFIX)
    return rel if name.startswith(MEDIA_PREFIX) and STIMULUS_PATH.fullmatch(rel) else None


def stimulus_path(rel: str) -> str:
    """The stored name of an item's image path; only ``stimuli/<sha256>.png`` names one (an export never
    reads any other file, whatever a row says)."""
    if not isinstance(rel, str) or not STIMULUS_PATH.fullmatch(rel):
        raise ApplicationError(
            f"{rel!r} is not a stimulus path (stimuli/<sha256>.png)", {"path": str(rel)[:200]}
        )
    return rel


def media_paths(study: Study) -> list[str]:
    """The distinct image paths the study's items name, sorted."""
    paths = set()
    for field in IMAGE_FIELDS:
        paths.update(
            Item.objects.filter(study=study).exclude(**{field: ""}).values_list(field, flat=True).distinct()
        )
    return sorted(paths)


def write_restore(zf: zipfile.ZipFile, study: Study, rows: dict[str, tuple]) -> dict:
    """Add restore/ to an archive being written from dump_rows; returns the manifest. Tables are read and
    encoded a chunk of rows at a time and images copied from the media storage in chunks (exports.archive),
    never held whole."""
    digests, counts = {}, {}
    for table in ("study", *(t for t, _, _ in TABLES)):
        name = f"restore/{table}.jsonl"
        n, table_rows = rows[table]
        digests[name] = member_add_lines(zf, name, table_rows, n)
        counts[table] = n
    for rel in media_paths(study):
        name = f"restore/media/{rel}"
        digests[name] = member_add_file(zf, name, stimulus_path(rel), compress=False)
    manifest = {"format": FORMAT, "rows": counts, "files": digests}
    member_add(zf, "restore/manifest.json", json.dumps(manifest, indent=1, sort_keys=True).encode())
    return manifest


class _Archive:
    """A checked restore/ section: the manifest, the parsed rows by table, the checked images (media path ->
    archive member)."""

    def __init__(self, manifest: dict, tables: dict[str, list[dict]], images: dict[str, str]):
        self.manifest, self.tables, self.images = manifest, tables, images


def _refuse(message: str, **extra) -> ApplicationError:
    return ApplicationError(message, extra or {"field": "archive"})


def _restore_members(zf: zipfile.ZipFile, limits: dict) -> dict[str, zipfile.ZipInfo]:
    """The restore/ members, checked against the directory limits and the expected names (nothing read
    yet)."""
    members = {m.filename: m for m in zf.infolist() if m.filename.startswith("restore/") and not m.is_dir()}
    if "restore/manifest.json" not in members:
        raise _refuse(
            "this archive has no restore/ section "
            "(exports before format perceptlab-restore/1 cannot be restored)"
        )
    if (
        len(members) > limits["restore_max_files"]
        or sum(m.file_size for m in members.values()) > limits["restore_max_total_bytes"]
    ):
        raise _refuse("the archive is too large to restore")
    for name, member in members.items():
        if name != "restore/manifest.json" and not TABLE_FILE.fullmatch(name) and not _media_rel(name):
            raise _refuse(
                f"{name}: unexpected file (images must be restore/media/stimuli/<sha256>.png)", file=name
            )
        too_big = member.file_size > limits["restore_max_file_bytes"] * (1 if _media_rel(name) else 64)
        if too_big or (
            member.file_size > 1024
            and member.file_size > max(member.compress_size, 1) * limits["max_compression_ratio"]
        ):
            raise _refuse(f"{name}: too large or too compressed", file=name)
    return members


def _restore_manifest(zf: zipfile.ZipFile, members: dict[str, zipfile.ZipInfo]) -> dict:
    """restore/manifest.json, of our format, listing exactly the restore/ members."""
    try:
        manifest = json.loads(zf.read("restore/manifest.json"))
    except (ValueError, zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError) as exc:
        raise _refuse(
            f"restore/manifest.json is not readable JSON ({exc.__class__.__name__})",
            file="restore/manifest.json",
        ) from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        fmt = manifest.get("format") if isinstance(manifest, dict) else None
        raise _refuse(f"unknown restore format {fmt!r} (this version reads {FORMAT})")
    files, counts = manifest.get("files"), manifest.get("rows")
    if (
        not isinstance(files, dict)
        or not isinstance(counts, dict)
        or not all(isinstance(v, str) for v in files.values())
    ):
        raise _refuse(
            "restore/manifest.json has no valid files and rows sections", file="restore/manifest.json"
        )
    for name in files:
        if name not in members:
            raise _refuse(f"{name} is listed in the manifest but missing", file=name)
    extra = set(members) - set(files) - {"restore/manifest.json"}
    if extra:
        raise _refuse(f"files not in the manifest: {sorted(extra)[:5]}", file=sorted(extra)[0])
    return manifest


def _restore_image(name: str, data: bytes, rel: str, limits: dict) -> None:
    """A stimulus image: its bytes hash to its name, and it is a real PNG within the pixel cap."""
    if hashlib.sha256(data).hexdigest() != STIMULUS_PATH.fullmatch(rel)["sha"]:
        raise _refuse(f"{name}: content does not hash to its name (stimuli are content-addressed)", file=name)
    # a real PNG within the pixel cap (read from the header before decoding), not a page or script
    decode_image(
        name,
        data,
        formats={"PNG"},
        max_side=limits["restore_max_image_pixels"],
        max_pixels=limits["restore_max_image_pixels"],
    )


def _restore_table(name: str, data: bytes) -> list[dict]:
    try:
        rows = [json.loads(line) for line in data.splitlines()]
    except (ValueError, RecursionError) as exc:  # RecursionError: absurdly nested JSON
        raise _refuse(f"{name}: not JSON lines ({exc})", file=name) from exc
    if not all(isinstance(row, dict) for row in rows):
        raise _refuse(f"{name}: every line must be a JSON object", file=name)
    return rows


def _read_archive(zf: zipfile.ZipFile) -> _Archive:
    """Every member checked against the directory limits, the manifest's digests and the expected names
    before it is used. Images must be ``stimuli/<sha256>.png`` whose bytes hash to that name."""
    limits = settings.PERCEPTLAB_LIMITS
    members = _restore_members(zf, limits)
    manifest = _restore_manifest(zf, members)
    files, counts = manifest["files"], manifest["rows"]
    tables: dict[str, list[dict]] = {}
    images: dict[str, str] = {}
    for name, digest in files.items():
        try:
            data = zf.read(members[name])
        except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError, EOFError) as exc:
            raise _refuse(
                f"{name}: cannot be read from the zip ({exc.__class__.__name__})", file=name
            ) from exc
        if hashlib.sha256(data).hexdigest() != digest:
            raise _refuse(f"{name}: content does not match its sha256 in the manifest", file=name)
        rel = _media_rel(name)
        if rel:
            _restore_image(name, data, rel, limits)
            images[rel] = name  # read again when written: one image in memory at a time
            continue
        tables[TABLE_FILE.fullmatch(name)["table"]] = _restore_table(name, data)
    for table in ("study", *(t for t, _, _ in TABLES)):
        if table in OPTIONAL_TABLES and table not in counts and table not in tables:
            tables[table] = []  # an archive from before this table existed
            continue
        if len(tables.get(table, ())) != counts.get(table):
            raise _refuse(
                f"restore/{table}.jsonl does not hold {counts.get(table)!r} rows",
                file=f"restore/{table}.jsonl",
            )
    if len(tables["study"]) != 1:
        raise _refuse("restore/study.jsonl must hold exactly one study", file="restore/study.jsonl")
    return _Archive(manifest, tables, images)


def _objects(model, table: str, rows: list[dict], rebind: dict) -> list:
    """Model objects from archive rows, every stored field parsed and validated (no queries). `rebind`
    maps a foreign-key attname to {archive id: id to use}; a reference outside the map is refused, so
    a row can only point at rows of the same archive (or at the worker identity it was matched to)."""
    fields = _fields(model)
    relations = [f.name for f in fields if f.is_relation]
    rebind = {
        f.attname: rebind.get(f.attname, {}) for f in fields if f.is_relation
    }  # unmapped: nothing allowed
    out = []
    for n, row in enumerate(rows, start=1):
        where = f"restore/{table}.jsonl line {n}"
        values = {}
        for f in fields:
            if f.attname not in row and f.attname in ADDED_FIELDS.get(table, ()):
                values[f.attname] = f.get_default()  # an archive written before the field existed
                continue
            try:
                value = _parse(f, row.get(f.attname))
            except (DjangoValidationError, TypeError, ValueError, AttributeError) as exc:
                raise _refuse(
                    f"{where}: {f.attname} is not valid ({exc})", file=f"restore/{table}.jsonl", line=n
                ) from exc
            if f.is_relation:
                if value is None and f.null:
                    pass
                elif value not in rebind[f.attname]:
                    raise _refuse(
                        f"{where}: {f.attname} {value} is not a row of this archive",
                        file=f"restore/{table}.jsonl",
                        line=n,
                    )
                else:
                    value = rebind[f.attname][value]
            values[f.attname] = value
        obj = model(**values)
        try:
            # a null the database allows is fine even where the model's forms would want a value
            obj.clean_fields(
                exclude=relations + [f.name for f in fields if f.null and values[f.attname] is None]
            )
        except DjangoValidationError as exc:
            raise _refuse(f"{where}: {exc.message_dict}", file=f"restore/{table}.jsonl", line=n) from exc
        out.append(obj)
    return out


def _rebind(rows: list[dict], study: Study) -> list[dict]:
    return [{**row, "study_id": str(study.pk)} for row in rows]


def _check_ids(table: str, objs: list) -> set:
    ids = [obj.pk for obj in objs]
    if None in ids or len(set(ids)) != len(ids):
        raise _refuse(f"restore/{table}.jsonl: every row needs its own id", file=f"restore/{table}.jsonl")
    return set(ids)


def _refuse_existing(model, table: str, ids: set) -> None:
    """No archive row may take (and so overwrite or join) a row that already exists here."""
    chunk = list(ids)
    for i in range(0, len(chunk), 500):
        taken = model.objects.filter(pk__in=chunk[i : i + 500]).values_list("pk", flat=True).first()
        if taken is not None:
            raise ApplicationError(
                f"restore/{table}.jsonl: row {taken} is already in this database (restore into a "
                "database that does not hold this study)",
                {"file": f"restore/{table}.jsonl"},
                status_code=409,
            )


def _check_images(items: list, images: dict[str, str]) -> dict[str, str]:
    """Every image path of every item is stimuli/<sha256>.png, carried by the archive or already stored
    with content that hashes to its name. Returns the archive's images that are not stored yet."""
    referenced = set()
    for n, item in enumerate(items, start=1):
        for key in IMAGE_FIELDS:
            rel = getattr(item, key)
            if rel == "" and key == "p1_image":
                continue
            if not STIMULUS_PATH.fullmatch(rel):
                raise _refuse(
                    f"restore/items.jsonl line {n}: {key} {rel[:200]!r} is not a stimulus path "
                    "(stimuli/<sha256>.png)",
                    file="restore/items.jsonl",
                    line=n,
                )
            referenced.add(rel)
    unused = set(images) - referenced
    if unused:
        raise _refuse(
            f"restore/media/{min(unused)} is not referenced by any item", file=f"restore/media/{min(unused)}"
        )
    missing = {}
    for rel in sorted(referenced):
        if storage.exists(rel):
            if hashlib.sha256(storage.read_bytes(rel)).hexdigest() != STIMULUS_PATH.fullmatch(rel)["sha"]:
                raise ApplicationError(
                    f"{rel} on this server does not hash to its name; an operator must check it "
                    "before this archive can be restored",
                    {"file": rel},
                    status_code=409,
                )
        elif rel in images:
            missing[rel] = images[rel]
        else:
            raise _refuse(f"{rel} is neither in the archive nor on this server", file=f"restore/media/{rel}")
    return missing


def _create(model, objs: list) -> None:
    recorded = [obj.created_at for obj in objs]
    model.objects.bulk_create(objs, batch_size=500)
    # bulk_create stamps auto_now_add fields with "now"; put the recorded creation times back
    for obj, created_at in zip(objs, recorded, strict=True):
        obj.created_at = created_at
    model.objects.bulk_update(objs, ["created_at"], batch_size=500)


def study_restore(*, archive, owner=None) -> Study:
    """Rebuild a study from an export's restore/ section, all or nothing. Everything is checked before
    anything is written: every member, every row (fields, ids, references) and every image. The study keeps
    its id and its rows keep theirs, so a re-export is byte-identical; an id that already exists in this
    database is refused (409). Every row is rebound to the restored study (whatever study id it names) and
    may reference only rows of the same archive; the copy belongs to `owner`."""
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise ApplicationError("not a zip archive", {"field": "archive"}) from exc
    with zf:
        return _restore(zf, owner)


def _restore_workers(rows: list[dict]) -> tuple[dict, list]:
    """archive worker id -> id here (a known identity, platform + hash, is reused), and the workers to
    create."""
    workers = _objects(Worker, "workers", rows, {})
    worker_map = {}
    new_workers = []
    for w in workers:
        known = (
            Worker.objects.filter(platform=w.platform, external_hash=w.external_hash)
            .values_list("pk", flat=True)
            .first()
        )
        worker_map[w.pk] = known if known is not None else w.pk
        if known is None:
            new_workers.append(w)
    _check_ids("workers", workers)
    return worker_map, new_workers


def _restore_write(zf: zipfile.ZipFile, study: Study, rows: list[tuple], new_images: dict[str, str]) -> None:
    """Write the checked rows (in dependency order) and the new image files, in one transaction."""
    try:
        with transaction.atomic():
            created_at = study.created_at
            study.save(force_insert=True)
            Study.objects.filter(pk=study.pk).update(created_at=created_at)
            study.created_at = created_at
            for model, objs in rows:
                _create(model, objs)
            # the HITs' judgment counters are counted from the restored judgments, never taken on trust
            # from the archive (one written before they existed has none)
            tallies.resync(study_id=study.pk)
            for rel, member in new_images.items():
                data = zf.read(member)
                if (
                    hashlib.sha256(data).hexdigest() != STIMULUS_PATH.fullmatch(rel)["sha"]
                ):  # the zip changed underneath
                    raise _refuse(f"{member}: content does not hash to its name", file=member)
                storage.save_if_absent(rel, data)  # or written meanwhile: same name, same bytes
    except IntegrityError as exc:
        raise ApplicationError(
            f"the archive's rows conflict with each other or with this database: {exc}",
            {"field": "archive"},
            status_code=409,
        ) from exc


def _checked_study(rows: list[dict], owner) -> Study:
    """The archive's study, owned by `owner`: valid fields and config, and an id this database lacks."""
    (study,) = _objects(Study, "study", rows, {})
    _check_ids("study", [study])
    study.owner = owner
    collection_config(study.kind, study.config)  # a bad config is a 400 naming the key, not a broken study
    if Study.objects.filter(pk=study.pk).exists():
        raise ApplicationError(f"study {study.pk} is already in this database", status_code=409)
    return study


def _check_adaptive(items: list, study: Study) -> None:
    """Counts and propensities no collection could produce are refused: n_ones beyond n_judgments (the
    stopping rule would fail every answer on the item), a target past its split's maximum (served past the
    vote budget), a propensity outside (0, 1] (exports and the Des Raj estimator take it as a probability)."""
    config = study.collection
    for n, item in enumerate(items, start=1):
        _, high = votes_range(config, item.split)
        problem = (
            (
                item.n_ones > item.n_judgments
                and f"n_ones {item.n_ones} exceeds n_judgments {item.n_judgments}"
            )
            or (item.n_target > high and f"n_target {item.n_target} exceeds its split's maximum {high}")
            or (
                item.propensity is not None
                and not 0 < item.propensity <= 1
                and f"propensity {item.propensity} is not in (0, 1]"
            )
        )
        if problem:
            raise _refuse(f"restore/items.jsonl line {n}: {problem}", file="restore/items.jsonl", line=n)


def _checked_rows(tables: dict[str, list[dict]], study: Study) -> dict:
    """Model -> the objects to create, in write order (rows before the rows that reference them). Every
    row is parsed and validated, every id is unique, every reference points into the archive (or at the
    worker identity a worker was matched to)."""
    rebound = {"study_id": {study.pk: study.pk}}  # every row joins the restored study, whatever it names
    items = _objects(Item, "items", _rebind(tables["items"], study), rebound)
    _check_adaptive(items, study)
    item_ids = _check_ids("items", items)
    worker_map, new_workers = _restore_workers(tables["workers"])
    same = {i: i for i in item_ids}
    assignments = _objects(
        Assignment, "assignments", _rebind(tables["assignments"], study), {**rebound, "worker_id": worker_map}
    )
    assignment_ids = _check_ids("assignments", assignments)
    trials = _objects(
        Trial,
        "trials",
        tables["trials"],
        {"assignment_id": {i: i for i in assignment_ids}, "worker_id": worker_map, "item_id": same},
    )
    trial_ids = _check_ids("trials", trials)
    judgments = _objects(
        Judgment,
        "judgments",
        tables["judgments"],
        {
            "trial_id": {i: i for i in trial_ids},
            "assignment_id": {i: i for i in assignment_ids},
            "worker_id": worker_map,
            "item_id": same,
        },
    )
    _check_ids("judgments", judgments)
    reviews = _objects(
        WorkerReview, "reviews", _rebind(tables["reviews"], study), {**rebound, "worker_id": worker_map}
    )
    _check_ids("reviews", reviews)
    return {
        Item: items,
        Worker: new_workers,
        Assignment: assignments,
        Trial: trials,
        Judgment: judgments,
        WorkerReview: reviews,
    }


def _refuse_taken(rows: dict) -> None:
    """No row to create may take an id that this database already holds."""
    table_of = {model: table for table, model, _ in TABLES}
    for model, objs in rows.items():
        _refuse_existing(model, table_of[model], {obj.pk for obj in objs})


def _restore(zf: zipfile.ZipFile, owner) -> Study:
    """Check the study, its rows, their ids and the images, in that order; only then write anything."""
    checked = _read_archive(zf)
    study = _checked_study(checked.tables["study"], owner)
    rows = _checked_rows(checked.tables, study)
    _refuse_taken(rows)
    new_images = _check_images(rows[Item], checked.images)
    # all checked: now write, rows first (one transaction), the new image files last inside it
    _restore_write(zf, study, list(rows.items()), new_images)
    if checked.tables["items"] and "n_target" not in checked.tables["items"][0]:
        item_counts_fill(study=study)  # an archive from before adaptive collection
    logger.info("restored study %s: %s", study.pk, checked.manifest["rows"])
    return study
