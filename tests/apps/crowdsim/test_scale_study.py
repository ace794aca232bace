"""The BAPPS-scale study (issue 19, crowdsim.scale): the paper's split, the bulk writer proven equivalent to
the real answer path, and at 5k items the pages and the export keep their shape (queries that do not grow
with the study; the export read in chunks)."""

from __future__ import annotations

import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from crowdsim import scale
from crowdsim.scale import BAPPS_2AFC, BAPPS_ITEMS, ScaleCrowd, ScaleParams, bapps_split
from distortions.imageio import write_png
from exports.services import export_archive_write
from judgments import assignments, tallies
from judgments.models import Assignment, Judgment, Trial
from studies.models import Item, Study
from studies.services import study_create

pytestmark = pytest.mark.django_db


def test_the_split_is_the_papers():
    """docs/science.md "Sizes": 151.4k train triplets (traditional, cnn, mix) and 36.3k val (six sets)."""
    assert BAPPS_ITEMS == 187_700
    assert bapps_split(BAPPS_ITEMS) == list(BAPPS_2AFC)
    train = sum(n for split, _, n in bapps_split(BAPPS_ITEMS) if split == "train")
    assert train == 151_400
    small = bapps_split(5_000)
    assert sum(n for _, _, n in small) == 5_000
    assert {(s, c) for s, c, _ in small} == {(s, c) for s, c, _ in BAPPS_2AFC}
    assert dict(((s, c), n) for s, c, n in small)[("train", "traditional")] == 1509  # 5000 x 56,640/187,700


def _entries(settings, *, n_test: int, n_sentinels: int, n_practice: int) -> list[dict]:
    """Engine-manifest entries (distortions.read_manifest's shape) over small random PNGs: the engine itself
    is not under test here."""
    images = Path(settings.MEDIA_ROOT) / "stimuli"
    images.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    roles = ["practice"] * n_practice + ["sentinel"] * n_sentinels + ["test"] * n_test
    out = []
    for index, role in enumerate(roles):
        base = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
        noise = rng.integers(0, 60 if role == "test" else 120, (2, 16, 16, 3), dtype=np.uint8)
        p0 = base if role == "sentinel" else base // 2 + noise[0] // 2  # a sentinel: p0 is the reference
        files = [write_png(img, images)[0] for img in (base, p0, base // 2 + noise[1])]
        out.append(
            {
                "index": index,
                "role": role,
                "expected": "p0" if role != "test" else None,
                "files": dict(zip(("ref", "p0", "p1"), files, strict=True)),
                "patch": {"i": index},
                "records": {},
                "pixels_sha256": "",
            }
        )
    return out


def _study(params: ScaleParams, entries: list[dict], name: str, owner=None) -> Study:
    study = study_create(name=name, kind="2afc", build_config={}, config=params.config(), owner=owner)
    scale.scale_items_write(study, params, entries)
    Study.objects.filter(pk=study.pk).update(status=Study.Status.ACTIVE)
    study.refresh_from_db()
    return study


def _content(study: Study) -> dict:
    """Everything the two writers must agree on: every row of the study but ids, tokens, public ids and
    times (HITs in order; trials by position; the item counters)."""
    hits = list(Assignment.objects.filter(study=study).order_by("created_at").select_related("worker"))
    order = {a.pk: k for k, a in enumerate(hits)}
    code = study.collection["completion_code"]  # each study draws its own
    return {
        "items": list(
            Item.objects.filter(study=study)
            .order_by("index")
            .values_list("index", "role", "split", "n_judgments", "n_open", "n_target", "n_ones")
        ),
        "hits": [
            (
                a.worker.external_hash,
                a.status,
                a.n_trials,
                a.n_answered,
                *(getattr(a, field) for field in tallies.FIELDS.values()),
                a.excluded,
                a.qc,
                a.completion_code == code,
            )
            for a in hits
        ],
        "trials": sorted(
            (order[t.assignment_id], t.position, t.item.index, t.kind, t.swap, t.answered)
            for t in Trial.objects.filter(assignment__study=study).select_related("item")
        ),
        "judgments": sorted(
            (
                order[j.assignment_id],
                j.trial.position,
                j.item.index,
                j.kind,
                j.idempotency_key,
                j.response,
                j.choice,
                j.presented_left,
                j.correct,
                j.rt_ms,
                j.durations,
                j.display,
                j.timing_flagged,
                j.worker_id == j.trial.worker_id == j.assignment.worker_id,
            )
            for j in Judgment.objects.filter(assignment__study=study).select_related(
                "trial", "item", "assignment"
            )
        ),
    }


def test_the_bulk_writer_stores_what_the_real_answer_path_stores(settings, monkeypatch, captured_tasks):
    """Same seeds, two studies with the same items: one answered through assignment_start, judgment_submit
    and assignment_submit, the other by crowd_run_bulk. Every row and counter agrees, QC exclusions (a third
    of the crowd spams) and the end of the work (no_work) included."""
    params = ScaleParams(items=60, judgments=10**6, workers=6, spammers=0.34, hit_size=10, sentinel_rate=0.2)
    entries = _entries(settings, n_test=12, n_sentinels=6, n_practice=2)
    real, bulk = _study(params, entries, "real"), _study(params, entries, "bulk")
    distances = scale.item_distances(real)
    assert distances == scale.item_distances(bulk)

    monkeypatch.setattr(assignments, "_rng", scale.hit_rng(params))
    stored_real = scale.crowd_run_services(real, ScaleCrowd(params, distances))
    stored_bulk = scale.crowd_run_bulk(bulk, ScaleCrowd(params, distances))

    a, b = _content(real), _content(bulk)
    assert stored_real == stored_bulk > 0
    assert a["items"] == b["items"] and a["hits"] == b["hits"]
    assert a["trials"] == b["trials"] and a["judgments"] == b["judgments"]
    # the run exercised what makes the rule subtle: exclusions given back, and a study filled to its targets
    excluded = 4 + len(tallies.FIELDS)  # the hits' column
    assert any(h[excluded] for h in a["hits"]) and not all(h[excluded] for h in a["hits"])
    # the HITs' judgment counters (the dashboard's tallies) are the judgments' own, on both writers
    assert tallies.mismatches(study_id=real.pk) == {} and tallies.mismatches(study_id=bulk.pk) == {}
    assert all(sum(h[4:excluded]) > 0 for h in a["hits"])
    targets = {"train": 2, "val": 5}
    tests = [(split, n) for _, role, split, n, *_ in a["items"] if role == "test"]
    assert all(n <= targets[split] for split, n in tests)  # the run went on until a worker found no work
    assert sum(n == targets[split] for split, n in tests) >= 0.9 * len(tests)
    assert all(n_open == 0 for _, _, _, _, n_open, _, _ in a["items"])


def test_a_judgment_budget_stops_the_crowd_after_the_hit_that_reaches_it(settings):
    params = ScaleParams(items=60, judgments=27, workers=3, spammers=0.0, hit_size=10, sentinel_rate=0.2)
    study = _study(params, _entries(settings, n_test=12, n_sentinels=6, n_practice=2), "budget")
    stored = scale.crowd_run_bulk(study, ScaleCrowd(params, scale.item_distances(study)))
    assert stored == 39  # three HITs of 10 tests and 3 sentinels: two give 26, the third passes 27
    assert Judgment.objects.filter(assignment__study=study).exclude(kind="practice").count() == 39
    assert Assignment.objects.filter(study=study).count() == 3


@pytest.fixture
def sizes(settings, researcher_carol):
    """Carol's scale studies at two sizes: 200 items with ~600 judgments, and 5k items with ~14k judgments
    (the suite's small version of the BAPPS-scale study)."""
    entries = _entries(settings, n_test=40, n_sentinels=15, n_practice=4)
    out = {}
    for name, items, judgments in (("small", 200, 600), ("large", 5_000, 14_000)):
        params = ScaleParams(items=items, judgments=judgments, workers=60)
        study = _study(params, entries, name, owner=researcher_carol)
        scale.crowd_run_bulk(study, ScaleCrowd(params, scale.item_distances(study)))
        out[name] = study
    return out


def _queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    assert response.status_code == 200, url
    return len(ctx.captured_queries)


def test_the_pages_cost_the_same_queries_at_5k_items_as_at_200(sizes, client, researcher_carol):
    """The study page (progress, QC histograms, the first workers), the workers table and the API's study
    and workers reads: aggregates in SQL and pages of workers, so their query count does not grow with the
    study's items, judgments or workers."""
    small, large = sizes["small"], sizes["large"]
    assert (
        Judgment.objects.filter(assignment__study=large).count()
        > 10 * Judgment.objects.filter(assignment__study=small).count()
    )
    client.force_login(researcher_carol)
    api = APIClient()
    api.force_authenticate(researcher_carol)
    for page in ("/dashboard/{}/", "/dashboard/{}/workers/", "/dashboard/{}/workers/?page=2"):
        assert _queries(client, page.format(small.pk)) == _queries(client, page.format(large.pk)), page
    for path in ("/api/v1/studies/{}/", "/api/v1/studies/{}/workers/?page=2"):
        assert _queries(api, path.format(small.pk)) == _queries(api, path.format(large.pk)), path


def test_the_export_reads_its_rows_in_chunks(sizes, monkeypatch, tmp_path):
    """At 5k items the export holds a chunk of rows at a time, not the study (it held every row before):
    with chunks of 100 rows its peak Python memory while writing the archive to a file stays within twice
    the size of its judgment rows as JSON text (12-20 MB here); held as Python dicts, as they were, those
    rows alone take several times that. What it does hold grows with the items: their votes and BAPPS
    paths, and zipfile's directory entry of each member (~400 B each, 4 members per item), kept until the
    central directory is written."""
    from exports import restore, services

    large = sizes["large"]
    monkeypatch.setattr(services, "ROWS_PER_FETCH", 100)
    monkeypatch.setattr(restore, "ROWS_PER_FETCH", 100)
    path = tmp_path / "export.zip"
    tracemalloc.start()
    try:
        with open(path, "wb") as handle:
            summary = export_archive_write(study=large, fileobj=handle)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    with zipfile.ZipFile(path) as zf:
        rows_bytes = zf.getinfo("judgments.jsonl").file_size + zf.getinfo("restore/judgments.jsonl").file_size
        assert len(zf.read("judgments.jsonl").splitlines()) == summary["n_judgments"]
    assert summary["n_judgments"] > 10_000 and summary["n_items"] == 5_000
    assert peak < 2 * rows_bytes, (peak, rows_bytes)


def test_the_exports_stem_rule_is_the_metric_readers():
    """exports.services.bapps_stem repeats metric.data.bapps_stem so that an export does not load torch."""
    from exports.services import bapps_stem
    from metric.data import bapps_stem as metric_stem

    for n in (1, 9, 10, 999_999, 1_000_000, 187_700, 12_345_678):
        for i in (0, 1, n // 2, n - 1):
            assert bapps_stem(i, n) == metric_stem(i, n)
