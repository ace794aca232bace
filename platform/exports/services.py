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

import numpy as np
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Max, Min
from django.utils import timezone
from django.utils.text import slugify

from core import storage
from core.exceptions import ApplicationError
from core.tasks import enqueue_on_commit
from exports.archive import file_digest, member_add, member_add_file, member_add_lines
from exports.models import Export
from exports.restore import dump_rows, stimulus_path, write_restore
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


def _hit_origins(study: Study) -> dict:
    """Assignment id -> each HIT's first client timestamp (practice included): client times are published
    relative to it."""
    origins = {}
    for a, shown, answered in (
        Judgment.objects.filter(assignment__study=study)
        .order_by()
        .values("assignment_id")
        .annotate(s=Min("client_shown_at"), a=Min("client_answered_at"))
        .values_list("assignment_id", "s", "a")
    ):
        first = min((t for t in (shown, answered) if t is not None), default=None)
        if first is not None:
            origins[str(a)] = first
    return origins


def _snapshot_rows(study: Study, include_user_agent: bool = False) -> dict:
    items = list(Item.objects.filter(study=study).order_by("index").values(*_ITEM_COLUMNS))
    judgments = list(
        Judgment.objects.filter(item__study=study)
        .exclude(kind=Trial.Kind.PRACTICE)
        .order_by("created_at", "id")
        .values(*_JUDGMENT_COLUMNS)
    )
    assignments = list(
        Assignment.objects.filter(study=study).order_by("created_at", "id").values(*_ASSIGNMENT_COLUMNS)
    )
    return {
        "items": items,
        "judgments": judgments,
        "assignments": assignments,
        "origins": _hit_origins(study),
        "restore": dump_rows(study, include_user_agent=include_user_agent),
    }


def _read_snapshot(study: Study, include_user_agent: bool = False) -> dict:
    outer = connection.in_atomic_block  # inside an outer transaction the isolation level is already fixed
    with transaction.atomic():
        if connection.vendor == "postgresql" and not outer:
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        return _snapshot_rows(study, include_user_agent)


def _iso(value) -> str | None:
    return value.isoformat() if value is not None else None


def _counted_votes(judgments: list[dict], include_excluded: bool) -> dict:
    """item id -> [positive votes, counted votes] over the counted test judgments."""
    votes: dict = defaultdict(lambda: [0, 0])
    for j in judgments:
        if j["kind"] == Trial.Kind.TEST and (include_excluded or not j["assignment__excluded"]):
            votes[j["item_id"]][0] += j["choice"]  # 2AFC: chose p1; JND: said same
            votes[j["item_id"]][1] += 1
    return votes


def _write_bapps(zf: zipfile.ZipFile, kind: str, groups: dict, votes: dict) -> tuple[list[dict], dict]:
    """The BAPPS tree (images and vote fractions per split and category); returns the items.jsonl lines and
    item id -> BAPPS path stem."""
    from metric.data import bapps_stem  # imports torch: only in the worker that builds exports

    item_lines, paths_of = [], {}
    for (split, category), group in sorted(groups.items()):
        base = f"{kind}/{split}/{category}"
        for n, row in enumerate(group):
            stem = bapps_stem(n, len(group))
            positive, total = votes[row["id"]]
            parts = {"ref": row["ref_image"], "p0": row["p0_image"], "p1": row["p1_image"]}
            if kind == "jnd":
                parts.pop("ref")
            paths = {}
            for sub, rel in parts.items():
                path = f"{base}/{sub}/{stem}.png"
                member_add_file(zf, path, stimulus_path(rel))  # stimuli/<sha256>.png only, in chunks
                paths[sub] = path
            npy = io.BytesIO()
            np.save(npy, np.array([positive / total], dtype=np.float32))
            member_add(zf, f"{base}/{'judge' if kind == '2afc' else 'same'}/{stem}.npy", npy.getvalue())
            paths_of[row["id"]] = f"{split}/{category}/{stem}"
            line = {
                "kind": kind,
                "id": row["index"],
                "split": split,
                "category": category,
                "stem": stem,
                **paths,
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
                "records": row["records"],
            }
            item_lines.append(line)
    return item_lines, paths_of


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


def _bapps_groups(items: list[dict], votes: dict) -> dict:
    """(split, category) -> the test items with at least one counted vote, in index order: what the BAPPS
    tree holds."""
    groups: dict = defaultdict(list)
    for row in items:
        if row["role"] == Item.Role.TEST and votes[row["id"]][1] > 0:
            groups[(row["split"], row["category"])].append(row)
    return groups


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

    Memory: images are copied from disk in chunks and JSON lines encoded row by row (exports.archive), so
    neither the images nor the archive are ever held. The snapshot's rows are (one dict per row of each
    table, bounded by the study's row counts, not by its bytes)."""
    rows = _read_snapshot(study, include_user_agent)
    origins = rows["origins"]
    kind = study.kind
    items = {row["id"]: row for row in rows["items"]}
    votes = _counted_votes(rows["judgments"], include_excluded)
    groups = _bapps_groups(rows["items"], votes)
    counted = [0]

    with zipfile.ZipFile(fileobj, "w") as zf:
        item_lines, paths_of = _write_bapps(zf, kind, groups, votes)

        def judgment_lines():
            for j in rows["judgments"]:
                line = _judgment_line(
                    j,
                    items[j["item_id"]],
                    kind=kind,
                    bapps=paths_of.get(j["item_id"]),
                    origin=origins.get(str(j["assignment_id"])),
                    include_excluded=include_excluded,
                    include_user_agent=include_user_agent,
                )
                counted[0] += line["counted"]
                yield line

        tables = {
            "items.jsonl": (item_lines, len(item_lines)),
            "judgments.jsonl": (judgment_lines(), len(rows["judgments"])),
            "assignments.jsonl": (map(_assignment_line, rows["assignments"]), len(rows["assignments"])),
        }
        digests = {name: member_add_lines(zf, name, lines, n) for name, (lines, n) in tables.items()}
        counts = {
            "n_items": len(item_lines),
            "n_judgments": len(rows["judgments"]),
            "n_counted_judgments": counted[0],
            "n_assignments": len(rows["assignments"]),
            "n_excluded_assignments": sum(1 for a in rows["assignments"] if a["excluded"]),
        }
        summary = _summary(
            study,
            version=version,
            include_excluded=include_excluded,
            include_user_agent=include_user_agent,
            counts=counts,
            groups=groups,
            digests=digests,
        )
        summary["restore_rows"] = write_restore(zf, rows["restore"])["rows"]
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
