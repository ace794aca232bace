"""Exports: BAPPS layout readable by metric.data with the same labels, a raw manifest, QC exclusions,
versioning and immutability, the download API."""

import io
import json
import zipfile

import numpy as np
import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from exports.models import Export
from exports.services import export_archive_bytes, export_build, export_create
from judgments.assignments import assignment_start
from judgments.qc import assignment_submit
from metric.data import read_bapps_2afc, read_bapps_jnd, read_manifest

pytestmark = pytest.mark.django_db


def unzip(data: bytes, dest):
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        zf.extractall(dest)
    return dest


def votes_by_item(study):
    from judgments.models import Judgment

    out = {}
    for j in Judgment.objects.filter(item__study=study, kind="test", assignment__excluded=False):
        k, n = out.get(j.item.index, (0, 0))
        out[j.item.index] = (k + j.choice, n + 1)
    return out


def test_a_2afc_export_loads_with_the_metric_reader_and_gives_the_same_labels(
    crowd, make_study, answer_trials, tmp_path
):
    study = make_study(
        n_test=12,
        n_sentinels=3,
        n_practice=1,
        categories=("traditional", "cnn"),
        config={"hit_size": 6, "judgments_per_item": {"train": 2, "val": 3}},
    )
    rng = np.random.default_rng(0)
    crowd(study, 8, lambda t, i: i.expected or ("p0", "p1")[int(rng.random() < 0.3)])
    data, summary = export_archive_bytes(study=study, version=1)
    root = unzip(data, tmp_path / "x")
    expected = votes_by_item(study)
    items = [json.loads(line) for line in (root / "items.jsonl").read_text().splitlines()]
    assert len(items) == len(expected) == summary["n_items"] == 12
    for split in ("train", "val"):
        for cat in ("traditional", "cnn"):
            folder = root / "2afc" / split / cat
            bapps = read_bapps_2afc(folder, size=None)
            rows = [r for r in items if r["split"] == split and r["category"] == cat]
            assert len(bapps) == len(rows)
            for n, row in enumerate(sorted(rows, key=lambda r: r["stem"])):
                k, total = expected[row["id"]]
                assert bapps.p[n] == pytest.approx(k / total, abs=1e-6)
                assert row["p1_votes"] == k and row["n_votes"] == total
                assert sorted(p.name for p in (folder / "ref").iterdir())[n] == f"{row['stem']}.png"
    manifest = read_manifest(root / "items.jsonl", size=None)
    assert len(manifest) == 12
    rows = [json.loads(line) for line in (root / "judgments.jsonl").read_text().splitlines()]
    assert {r["role"] for r in rows} == {"test", "sentinel"}  # practice never exported
    assert all(len(r["worker"]) == 64 and r["sentinel_correct"] in (True, None) for r in rows)
    meta = json.loads((root / "export.json").read_text())
    assert meta["files"]["judgments.jsonl"] and meta["collection_config"]["exclusion"]


def test_excluded_workers_are_left_out_by_default_and_kept_in_the_manifest(
    make_study, answer_trials, tmp_path
):
    study = make_study(
        n_test=4,
        n_sentinels=4,
        n_practice=0,
        config={"hit_size": 4, "judgments_per_item": {"train": 1, "val": 1}},
    )
    spam = assignment_start(study=study, platform="anonymous", worker_id="spammer").assignment
    answer_trials(spam, lambda t, i: {"p0": "p1", "p1": "p0"}[i.expected] if i.expected else "p1")
    assert assignment_submit(token=spam.token).excluded
    good = assignment_start(study=study, platform="anonymous", worker_id="good").assignment
    answer_trials(good, lambda t, i: i.expected or "p0")
    assignment_submit(token=good.token)
    default, summary = export_archive_bytes(study=study)
    root = unzip(default, tmp_path / "default")
    assert summary["n_counted_judgments"] == 4 and summary["n_excluded_assignments"] == 1
    assert all(r["p1_votes"] == 0 for r in map(json.loads, (root / "items.jsonl").read_text().splitlines()))
    rows = [json.loads(line) for line in (root / "judgments.jsonl").read_text().splitlines()]
    assert (
        sum(r["excluded"] for r in rows) == 5 and sum(r["counted"] for r in rows) == 4
    )  # 4 tests + 1 sentinel
    everything, summary = export_archive_bytes(study=study, include_excluded=True)
    assert summary["n_counted_judgments"] == 8


def test_jnd_exports_use_the_same_folder(crowd, make_study, answer_trials, tmp_path):
    study = make_study(
        kind="jnd",
        n_test=4,
        n_sentinels=2,
        n_practice=0,
        val_fraction=1.0,
        config={"judgments_per_item": {"train": 3, "val": 3}},
    )
    crowd(study, 3, lambda t, i: i.expected or ("same" if i.index % 2 else "different"))
    root = unzip(export_archive_bytes(study=study)[0], tmp_path / "j")
    data = read_bapps_jnd(root / "jnd" / "val" / "traditional", size=None)
    assert len(data) == 4 and sorted(data.same.tolist()) == [0.0, 0.0, 1.0, 1.0]


def test_exports_are_versioned_immutable_and_downloadable(
    crowd,
    make_study,
    answer_trials,
    researcher_carol,
    researcher_dave,
    captured_tasks,
    django_capture_on_commit_callbacks,
):
    study = make_study(owner=researcher_carol, n_test=3, n_sentinels=1, n_practice=0)
    crowd(study, 2, lambda t, i: i.expected or "p0")
    carol = APIClient()
    carol.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=researcher_carol).key}")
    with django_capture_on_commit_callbacks(execute=True):
        r = carol.post(f"/api/v1/studies/{study.pk}/exports/", {}, format="json")
    assert r.status_code == 202 and r.json()["version"] == 1 and r.json()["download_url"] is None
    assert captured_tasks == [("exports.export_build", (r.json()["id"],), {})]
    export = export_build(export=Export.objects.get(pk=r.json()["id"]))  # what the worker does
    second = export_build(export=export_create(study=study))
    assert (
        second.version == 2 and second.summary["files"] == export.summary["files"]
    )  # same content, same bytes
    sha_before = export.sha256
    crowd(study, 1, lambda t, i: i.expected or "p1")
    export = export_build(export=export)  # a finished export is never rewritten
    assert export.sha256 == sha_before
    detail = carol.get(f"/api/v1/exports/{export.pk}/").json()
    assert detail["status"] == "done" and detail["summary"]["n_items"] == 3
    download = carol.get(detail["download_url"])
    body = b"".join(download.streaming_content)
    assert download.status_code == 200 and download["Content-Type"] == "application/zip"
    import hashlib

    assert hashlib.sha256(body).hexdigest() == export.sha256
    dave = APIClient()
    dave.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=researcher_dave).key}")
    assert dave.get(f"/api/v1/exports/{export.pk}/").status_code == 404
    assert dave.get(detail["download_url"]).status_code == 404
    assert APIClient().get(detail["download_url"]).status_code in (401, 403)


def test_the_demo_study_exports_to_bapps_with_the_same_labels(crowd, answer_trials, tmp_path):
    """The real demo study (engine-built from scikit-image photos): BAPPS export read back by metric."""
    from studies.services import demo_study_ensure

    study, _ = demo_study_ensure(n_items=12, with_cnn=False)
    rng = np.random.default_rng(1)
    crowd(study, 6, lambda t, i: i.expected or ("p0", "p1")[int(rng.random() < 0.5)])
    root = unzip(export_archive_bytes(study=study)[0], tmp_path / "demo")
    expected = votes_by_item(study)
    items = {
        (r["split"], r["category"], r["stem"]): r
        for r in map(json.loads, (root / "items.jsonl").read_text().splitlines())
    }
    assert len(items) == len(expected) > 0
    for folder in sorted((root / "2afc").glob("*/*")):
        data = read_bapps_2afc(folder)
        for n, ident in enumerate(data.ids):
            row = items[(folder.parent.name, folder.name, ident.split("/")[1])]
            k, total = expected[row["id"]]
            assert data.p[n] == pytest.approx(k / total, abs=1e-6)
            assert row["records"]["p0"]["ops"] or row["records"]["p0"]


def test_an_export_job_hit_by_a_database_outage_retries_and_finishes(make_study, answer_trials, monkeypatch):
    """Every Celery task retries on a lost database connection (config.celery_app.PlatformTask); an export
    interrupted that way is rebuilt rather than left running or failed."""
    from django.db import OperationalError

    from exports import services
    from exports.tasks import export_build as export_task

    study = make_study(n_test=4, n_sentinels=2, n_practice=0)
    answer_trials(
        assignment_start(study=study, platform="anonymous", worker_id="w1").assignment, lambda t, i: "p0"
    )
    export = export_create(study=study)
    real, calls = services.export_archive_write, []

    def flaky(**kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("terminating connection due to administrator command")
        return real(**kwargs)

    monkeypatch.setattr(services, "export_archive_write", flaky)
    result = export_task.apply(args=[str(export.pk)]).get()
    export.refresh_from_db()
    assert len(calls) == 2 and result["status"] == export.status == Export.Status.DONE and export.sha256
    assert export_task.max_retries and OperationalError in export_task.autoretry_for


def test_the_manifest_carries_each_items_sampler_version_and_propensity(crowd, make_study, tmp_path):
    """Adaptive collection (judgments.pool): items.jsonl says who drew each item and with what probability,
    for reweighted estimates; items outside a pool were served for certain (uniform@1, 1.0). The BAPPS tree
    is unchanged."""
    from studies.models import Item, Study

    study = make_study(n_test=12, n_sentinels=2, n_practice=0, val_fraction=0.5, config={"hit_size": 3})
    trains = Item.objects.filter(study=study, role="test", split="train")
    trains.update(active=False)
    Study.objects.filter(pk=study.pk).update(train_budget=4)
    study.refresh_from_db()
    crowd(study, 12, lambda t, i: i.expected or "p1")
    drawn = dict(trains.filter(active=True).values_list("index", "propensity"))
    assert len(drawn) == 4
    data, _ = export_archive_bytes(study=study, version=1)
    root = unzip(data, tmp_path / "x")
    items = [json.loads(line) for line in (root / "items.jsonl").read_text().splitlines()]
    for row in items:
        if row["split"] == "train":
            assert row["sampler_version"] == "uniform@1" and row["propensity"] == drawn[row["id"]] < 1
        else:
            assert (row["sampler_version"], row["propensity"]) == ("uniform@1", 1.0)
    assert {r["id"] for r in items if r["split"] == "train"} == set(drawn)  # unreleased: no votes, not here
    assert len(read_bapps_2afc(root / "2afc" / "train" / "traditional", size=None)) == 4
