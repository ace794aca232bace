"""Dataset exports: one immutable, versioned zip per request, built by a Celery job.

Archive layout (``<study-slug>-v<N>.zip``)::

    2afc/<split>/<category>/{ref,p0,p1}/<stem>.png and judge/<stem>.npy   (2AFC studies)
    jnd/<split>/<category>/{p0,p1}/<stem>.png and same/<stem>.npy         (JND studies)
    items.jsonl        one row per exported item: BAPPS paths, votes, distortion records (metric.data format)
    judgments.jsonl    one row per judgment: worker hash, sides, response time, sentinel outcome, flags,
                       display profile, client times as ms since the HIT's first trial (judgments.privacy)
    assignments.jsonl  one row per assignment: platform, status, QC outcome
    export.json        study, collection config (exclusion rule), counts, file digests
    restore/           every row and image of the study, for `manage.py study_restore` (exports.restore)

``judge`` is the fraction of counted judgments preferring p1 and ``same`` the fraction saying "same", one
float32 per .npy. Counted judgments are test-trial judgments from assignments not excluded by QC (or all
of them with include_excluded). All rows are read in one snapshot (REPEATABLE READ on Postgres; SQLite's
transaction is a snapshot already), so an export taken while judgments stream in is consistent.
"""

from __future__ import annotations

import io
import json
import logging
import os
import zipfile
from collections import defaultdict
from contextlib import contextmanager

import numpy as np
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, F, Max, Sum
from django.utils import timezone
from django.utils.text import slugify

from core import storage
from core.exceptions import ApplicationError
from core.tasks import enqueue_on_commit
from exports.archive import file_digest, member_add, member_add_file, member_add_lines
from exports.models import Export
from exports.restore import ROWS_PER_FETCH, dump_rows, hit_origins_of, stimulus_path, write_restore
from judgments.models import Assignment, Judgment, Trial
from judgments.pool import item_draw
from judgments.privacy import display_published, since_origin
from studies.models import Item, Study

logger = logging.getLogger(__name__)
EXPORTS_DIR = "exports"


def export_create(
    *, study: Study, user=None, include_excluded: bool = False, include_user_agent: bool = False
) -> Export:
    """Reserve the next version number and queue the build job."""
    for _ in range(5):
        try:
            with transaction.atomic():
                last = study.exports.aggregate(v=Max("version"))["v"] or 0
                export = Export.objects.create(
                    study=study,
                    version=last + 1,
                    created_by=user,
                    include_excluded=include_excluded,
                    include_user_agent=include_user_agent,
                )
                enqueue_on_commit("exports.export_build", str(export.pk))
                return export
        except IntegrityError:  # two requests raced for the same version number
            continue
    raise ApplicationError("could not reserve an export version; try again", status_code=409)


# the columns an export reads, per table
_ITEM_COLUMNS = (
    "id",
    "index",
    "split",
    "category",
    "role",
    "ref_image",
    "p0_image",
    "p1_image",
    "expected",
    "records",
    "sampler_version",
    "propensity",
    "draw",
)
_JUDGMENT_COLUMNS = (
    "id",
    "item_id",
    "assignment_id",
    "kind",
    "response",
    "choice",
    "presented_left",
    "correct",
    "rt_ms",
    "client_shown_at",
    "client_answered_at",
    "durations",
    "timing_flagged",
    "display",
    "created_at",
    "worker__external_hash",
    "worker__is_simulated",
    "assignment__excluded",
    "item__index",
    "item__split",
    "item__category",
)
_ASSIGNMENT_COLUMNS = (
    "id",
    "platform",
    "status",
    "excluded",
    "qc",
    "n_trials",
    "n_answered",
    "created_at",
    "submitted_at",
    "worker__external_hash",
    "worker__is_simulated",
)


@contextmanager
def _snapshot():
    """One consistent view of the study for the whole export: REPEATABLE READ on Postgres (SQLite's
    transaction is a snapshot already). Inside an outer transaction the isolation level is already fixed."""
    outer = connection.in_atomic_block
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                if not outer:
                    cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                # the rows are read through server-side cursors (iterator()), which PostgreSQL plans for
                # their first 10 % by default: fast-start nested loops that cost a third of the export
                cursor.execute("SET LOCAL cursor_tuple_fraction = 1.0")
        yield


def _iso(value) -> str | None:
    return value.isoformat() if value is not None else None


def _counted_votes(study: Study, include_excluded: bool) -> dict:
    """item id -> [positive votes, counted votes] over the counted test judgments, in one GROUP BY."""
    counted = Judgment.objects.filter(item__study=study, kind=Trial.Kind.TEST)
    if not include_excluded:
        counted = counted.filter(assignment__excluded=False)
    votes: dict = defaultdict(lambda: [0, 0])
    for item_id, positive, total in (
        counted.order_by()
        .values("item_id")
        .annotate(p=Sum("choice"), n=Count("pk"))
        .values_list("item_id", "p", "n")
    ):
        votes[item_id] = [positive, total]  # 2AFC: chose p1; JND: said same
    return votes


def _bapps_groups(study: Study, votes: dict) -> dict:
    """(split, category) -> the ids of the test items with at least one counted vote, in index order: what
    the BAPPS tree holds (ids only: the rows are read group by group as they are written)."""
    groups: dict = defaultdict(list)
    for pk, split, category in (
        Item.objects.filter(study=study, role=Item.Role.TEST)
        .order_by("index")
        .values_list("id", "split", "category")
        .iterator(chunk_size=ROWS_PER_FETCH)
    ):
        if votes[pk][1] > 0:
            groups[(split, category)].append(pk)
    return groups


def bapps_stem(i: int, n: int) -> str:
    """metric.data.bapps_stem's rule (zero-padded, at least 6 digits), which the BAPPS readers depend on.
    Not imported: importing metric loads torch, 0.9 GB of an export's peak RSS of 1 GB at 5k items. A test
    (tests/apps/crowdsim/test_scale_study.py) pins the two equal."""
    return f"{i:0{max(6, len(str(n)))}d}"


def _bapps_rows(study: Study, groups: dict):
    """(split, category, stem, item row) of every item in the BAPPS tree, group by group, in index order,
    read ROWS_PER_FETCH at a time."""
    for (split, category), ids in sorted(groups.items()):
        members = set(ids)
        rows = (
            Item.objects.filter(study=study, role=Item.Role.TEST, split=split, category=category)
            .order_by("index")
            .values(*_ITEM_COLUMNS)
            .iterator(chunk_size=ROWS_PER_FETCH)
        )
        n = 0
        for row in rows:
            if row["id"] in members:
                yield split, category, bapps_stem(n, len(ids)), row
                n += 1


def _write_bapps(zf: zipfile.ZipFile, kind: str, study: Study, groups: dict, votes: dict) -> dict:
    """The BAPPS tree (images and vote fractions per split and category); returns item id -> BAPPS path
    stem."""
    paths_of = {}
    for split, category, stem, row in _bapps_rows(study, groups):
        base = f"{kind}/{split}/{category}"
        positive, total = votes[row["id"]]
        parts = {"ref": row["ref_image"], "p0": row["p0_image"], "p1": row["p1_image"]}
        if kind == "jnd":
            parts.pop("ref")
        for sub, rel in parts.items():
            # stimuli/<sha256>.png only, copied in chunks
            member_add_file(zf, f"{base}/{sub}/{stem}.png", stimulus_path(rel))
        npy = io.BytesIO()
        np.save(npy, np.array([positive / total], dtype=np.float32))
        member_add(zf, f"{base}/{'judge' if kind == '2afc' else 'same'}/{stem}.npy", npy.getvalue())
        paths_of[row["id"]] = f"{split}/{category}/{stem}"
    return paths_of


def _item_lines(kind: str, study: Study, groups: dict, votes: dict):
    """The items.jsonl lines, in the BAPPS tree's order (read again, a chunk at a time)."""
    for split, category, stem, row in _bapps_rows(study, groups):
        base = f"{kind}/{split}/{category}"
        positive, total = votes[row["id"]]
        subs = ("p0", "p1") if kind == "jnd" else ("ref", "p0", "p1")
        yield {
            "kind": kind,
            "id": row["index"],
            "split": split,
            "category": category,
            "stem": stem,
            **{sub: f"{base}/{sub}/{stem}.png" for sub in subs},
            ("p1_votes" if kind == "2afc" else "same_votes"): positive,
            "n_votes": total,
            # adaptive collection: who drew the item and with what probability (judgments.pool)
            **dict(
                zip(
                    ("sampler_version", "propensity"),
                    item_draw(row["sampler_version"], row["propensity"]),
                    strict=True,
                )
            ),
            "draw": row["draw"],  # the place in the draw order the Des Raj estimator reads (None: no pool)
            "records": row["records"],
        }


def _judgment_line(
    j: dict,
    item: dict,
    *,
    kind: str,
    bapps: str | None,
    origin,
    include_excluded: bool,
    include_user_agent: bool,
) -> dict:
    """One judgments.jsonl line: client times relative to the HIT, no user agent unless asked for."""
    excluded = j["assignment__excluded"]
    return {
        "id": str(j["id"]),
        "item": item["index"],
        "role": j["kind"],
        "split": item["split"],
        "category": item["category"],
        "bapps": bapps,
        "assignment": str(j["assignment_id"]),
        "worker": j["worker__external_hash"],
        "simulated": j["worker__is_simulated"],
        "choice": (f"p{j['choice']}" if kind == "2afc" else ("same" if j["choice"] else "different")),
        "response": j["response"],
        "presented_left": j["presented_left"],
        "sentinel_correct": j["correct"],
        "rt_ms": j["rt_ms"],
        "shown_ms": since_origin(j["client_shown_at"], origin),
        "answered_ms": since_origin(j["client_answered_at"], origin),
        "durations": j["durations"],
        "timing_flagged": j["timing_flagged"],
        "display": display_published(j["display"], include_user_agent=include_user_agent),
        "excluded": excluded,
        "counted": j["kind"] == Trial.Kind.TEST and (include_excluded or not excluded),
        "created_at": _iso(j["created_at"]),
    }


def _assignment_line(a: dict) -> dict:
    return {
        "id": str(a["id"]),
        "worker": a["worker__external_hash"],
        "simulated": a["worker__is_simulated"],
        "platform": a["platform"],
        "status": a["status"],
        "excluded": a["excluded"],
        "qc": a["qc"],
        "n_trials": a["n_trials"],
        "n_answered": a["n_answered"],
        "created_at": _iso(a["created_at"]),
        "submitted_at": _iso(a["submitted_at"]),
    }


def _summary(
    study: Study,
    *,
    version: int,
    include_excluded: bool,
    include_user_agent: bool,
    counts: dict,
    groups: dict,
    digests: dict,
) -> dict:
    """What the export holds: its options, the counts of each table, the categories and the files' sha256."""
    return {
        "study": {"id": str(study.pk), "name": study.name, "kind": study.kind},
        "version": version,
        "include_excluded": include_excluded,
        "include_user_agent": include_user_agent,
        **counts,
        "categories": sorted({f"{s}/{c}" for s, c in groups}),
        "files": digests,
    }


def export_archive_write(
    *,
    study: Study,
    fileobj,
    include_excluded: bool = False,
    version: int = 0,
    include_user_agent: bool = False,
) -> dict:
    """Write the archive to a seekable binary file from one consistent snapshot; returns the summary. Client
    times relative to each HIT, no user agent unless asked for (judgments.privacy).

    Memory: images are copied from disk in chunks, and the rows are read from the database ROWS_PER_FETCH
    at a time and encoded row by row (exports.archive) while the snapshot's transaction stays open, so
    neither the images, the rows nor the archive are ever held. What is held grows with the study by a
    few small values per item (its votes and BAPPS path) and per assignment (its HIT's first client
    time)."""
    kind = study.kind
    counted = [0]
    with _snapshot(), zipfile.ZipFile(fileobj, "w") as zf:
        origins = hit_origins_of(study)
        votes = _counted_votes(study, include_excluded)
        groups = _bapps_groups(study, votes)
        paths_of = _write_bapps(zf, kind, study, groups, votes)
        judgments = (
            Judgment.objects.filter(item__study=study)
            .exclude(kind=Trial.Kind.PRACTICE)
            .order_by("created_at", "id")
        )
        assignments = Assignment.objects.filter(study=study).order_by("created_at", "id")

        def judgment_lines():
            for j in judgments.values(*_JUDGMENT_COLUMNS).iterator(chunk_size=ROWS_PER_FETCH):
                item = {"index": j["item__index"], "split": j["item__split"], "category": j["item__category"]}
                line = _judgment_line(
                    j,
                    item,
                    kind=kind,
                    bapps=paths_of.get(j["item_id"]),
                    origin=origins.get(str(j["assignment_id"])),
                    include_excluded=include_excluded,
                    include_user_agent=include_user_agent,
                )
                counted[0] += line["counted"]
                yield line

        counts = {
            "n_items": len(paths_of),
            "n_judgments": judgments.count(),
            "n_counted_judgments": 0,
            "n_assignments": assignments.count(),
            "n_excluded_assignments": assignments.filter(excluded=True).count(),
        }
        tables = {
            "items.jsonl": (_item_lines(kind, study, groups, votes), counts["n_items"]),
            "judgments.jsonl": (judgment_lines(), counts["n_judgments"]),
            "assignments.jsonl": (
                map(
                    _assignment_line,
                    assignments.values(*_ASSIGNMENT_COLUMNS).iterator(chunk_size=ROWS_PER_FETCH),
                ),
                counts["n_assignments"],
            ),
        }
        digests = {name: member_add_lines(zf, name, lines, n) for name, (lines, n) in tables.items()}
        counts["n_counted_judgments"] = counted[0]
        summary = _summary(
            study,
            version=version,
            include_excluded=include_excluded,
            include_user_agent=include_user_agent,
            counts=counts,
            groups=groups,
            digests=digests,
        )
        restore = dump_rows(study, origins=origins, include_user_agent=include_user_agent)
        summary["restore_rows"] = write_restore(zf, study, restore)["rows"]
        meta = {
            **summary,
            "collection_config": study.collection,
            "build_config": study.build_config,
            "format": "perceptlab-export/1",
        }
        member_add(zf, "export.json", json.dumps(meta, indent=2, sort_keys=True).encode())
    return summary


def export_archive_bytes(
    *, study: Study, include_excluded: bool = False, version: int = 0, include_user_agent: bool = False
) -> tuple[bytes, dict]:
    """The archive in memory (export_archive_write into a BytesIO): for tests and small studies only; the
    export job writes to a file."""
    buffer = io.BytesIO()
    summary = export_archive_write(
        study=study,
        fileobj=buffer,
        include_excluded=include_excluded,
        version=version,
        include_user_agent=include_user_agent,
    )
    return buffer.getvalue(), summary


def _archive_rel(export: Export) -> str:
    study = export.study
    return f"{EXPORTS_DIR}/{study.pk}/{slugify(study.name)[:60] or 'study'}-v{export.version}.zip"


def _given_up_reason(interrupted: int) -> str:
    return (
        f"the export job was interrupted {interrupted} times (the worker was killed, e.g. out of memory); "
        "it is not run again: give the export worker more memory, or export fewer items, then request a "
        "new export."
    )


def export_build(*, export: Export) -> Export:
    """Write the archive for a pending export. A finished export is never rewritten.

    The zip is streamed to ``<name>.zip.part`` next to its final path (core.storage.local_path), fsynced and
    renamed into place, or uploaded to a remote media storage; sha256 and size are read back from the file
    in chunks. The job is acks_late, so a worker killed
    mid-export (out of memory) gets it redelivered, forever unless bounded: each start counts in
    ``attempts``, and a start past PERCEPTLAB_EXPORT_MAX_ATTEMPTS marks the export failed with the reason
    instead of running it. A try that ends in an error it catches gives its attempt back (Celery's own
    retries bound those, e.g. a database outage), so ``attempts`` counts the interrupted tries. A failure
    leaves no .part file behind."""
    if export.status == Export.Status.DONE:
        return export
    limit = settings.PERCEPTLAB_EXPORT_MAX_ATTEMPTS
    if Export.objects.values_list("attempts", flat=True).get(pk=export.pk) > limit:  # given up already
        export.refresh_from_db()
        return export
    rel = _archive_rel(export)
    path = storage.local_path(rel)  # the storage's file when local; else a scratch copy, uploaded when done
    tmp = path.with_suffix(".zip.part")
    Export.objects.filter(pk=export.pk).update(attempts=F("attempts") + 1)
    attempts = Export.objects.values_list("attempts", flat=True).get(pk=export.pk)
    if attempts > limit:
        tmp.unlink(missing_ok=True)  # what the killed try had written
        Export.objects.filter(pk=export.pk).update(
            status=Export.Status.FAILED, error=_given_up_reason(attempts - 1)
        )
        logger.warning("export %s v%d: given up after %d attempts", export.study_id, export.version, limit)
        export.refresh_from_db()
        return export
    Export.objects.filter(pk=export.pk).update(status=Export.Status.RUNNING)
    study = export.study
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as handle:
            summary = export_archive_write(
                study=study,
                fileobj=handle,
                include_excluded=export.include_excluded,
                version=export.version,
                include_user_agent=export.include_user_agent,
            )
            handle.flush()
            os.fsync(handle.fileno())
        sha256, size = file_digest(tmp)
        storage.store_local(rel, tmp)
        Export.objects.filter(pk=export.pk).update(
            status=Export.Status.DONE,
            archive=rel,
            sha256=sha256,
            size_bytes=size,
            summary=summary,
            finished_at=timezone.now(),
            error="",
        )
        logger.info(
            "export %s v%d: %d items, %d judgments, %d bytes",
            study.pk,
            export.version,
            summary["n_items"],
            summary["n_judgments"],
            size,
        )
    except Exception as exc:
        Export.objects.filter(pk=export.pk).update(
            status=Export.Status.FAILED, error=repr(exc)[:2000], attempts=F("attempts") - 1
        )
        raise
    finally:
        tmp.unlink(missing_ok=True)  # gone after the rename; after any failure, nothing left behind
    export.refresh_from_db()
    return export
