"""Export -> restore round trips: a study restored from its export, in the same or a fresh database,
exports to the same bytes (every row and image), and damaged or duplicate archives are refused."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from exports.restore import SKIPPED, TABLES, study_restore
from exports.services import export_archive_bytes
from judgments.assignments import assignment_return, assignment_start
from judgments.models import Assignment, Judgment, Trial, Worker
from judgments.qc import assignment_submit
from studies.models import Item, Study

ROOT = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.django_db


def populate(make_study, answer_trials, kind="2afc"):
    """A study with every kind of row: practice, sentinels, honest and excluded HITs, a returned HIT, and a
    started HIT half answered."""
    study = make_study(
        kind=kind,
        n_test=12,
        n_sentinels=6,
        n_practice=2,
        config={"hit_size": 4, "judgments_per_item": {"train": 3, "val": 3}},
        categories=("a", "b"),
    )
    good = (lambda t, i: i.expected or "p1") if kind == "2afc" else (lambda t, i: i.expected or "same")
    flip = {"p0": "p1", "p1": "p0", "same": "different", "different": "same"}
    bad = lambda t, i: flip.get(i.expected) or ("p0" if kind == "2afc" else "different")  # noqa: E731
    for w, policy in enumerate([good, good, bad, good]):
        a = assignment_start(
            study=study,
            platform="prolific",
            worker_id=f"pid-{w}",
            platform_info={"study_id": "S", "session_id": f"sess-{w}"},
        ).assignment
        answer_trials(a, policy)
        assignment_submit(token=a.token)
    returned = assignment_start(study=study, platform="anonymous", worker_id="quitter").assignment
    answer_trials(returned, good, limit=3)
    assignment_return(token=returned.token)
    open_hit = assignment_start(study=study, platform="anonymous", worker_id="slow").assignment
    answer_trials(open_hit, good, limit=4)
    return study


def assert_same_archive(a: bytes, b: bytes) -> None:
    """Byte-identical; on a difference, name the members that differ and show the first difference."""
    if a == b:
        return
    with zipfile.ZipFile(io.BytesIO(a)) as za, zipfile.ZipFile(io.BytesIO(b)) as zb:
        assert za.namelist() == zb.namelist()
        for name in za.namelist():
            x, y = za.read(name), zb.read(name)
            if x != y:
                i = next((k for k in range(min(len(x), len(y))) if x[k] != y[k]), min(len(x), len(y)))
                raise AssertionError(
                    f"{name} differs at byte {i}: {x[max(0, i - 150) : i + 80]!r} "
                    f"!= {y[max(0, i - 150) : i + 80]!r}"
                )
    raise AssertionError("same members and contents, different zip bytes")


def delete_study(study) -> None:
    Judgment.objects.filter(assignment__study=study).delete()
    Trial.objects.filter(assignment__study=study).delete()
    Assignment.objects.filter(study=study).delete()
    Item.objects.filter(study=study).delete()
    study.delete()


@pytest.mark.parametrize("kind", ["2afc", "jnd"])
def test_a_restored_study_exports_to_the_same_bytes(
    make_study, answer_trials, settings, kind, researcher_carol
):
    study = populate(make_study, answer_trials, kind)
    assert Assignment.objects.filter(study=study, excluded=True).exists()
    assert Judgment.objects.filter(assignment__study=study, kind="practice").exists()
    original, summary = export_archive_bytes(study=study)
    assert summary["restore_rows"]["judgments"] == Judgment.objects.filter(assignment__study=study).count()
    tokens = set(Assignment.objects.filter(study=study).values_list("token", flat=True))
    before = {
        table: sorted(
            map(
                str,
                model.objects.filter(
                    **(
                        {"assignment__study": study}
                        if model in (Trial, Judgment)
                        else {"assignments__study": study}
                        if model is Worker
                        else {"study": study}  # items, assignments, reviews
                    )
                )
                .distinct()
                .values_list("pk", flat=True),
            )
        )
        for table, model, _ in TABLES
    }
    study_id = study.pk
    delete_study(study)
    for path in (Path(settings.MEDIA_ROOT) / "stimuli").iterdir():
        path.unlink()  # the images come back from the archive

    restored = study_restore(archive=io.BytesIO(original), owner=researcher_carol)
    assert restored.pk == study_id and restored.owner == researcher_carol
    again, _ = export_archive_bytes(study=restored)
    assert_same_archive(again, original)  # every row, every image, the BAPPS tree and the manifests
    # annotator credentials are not carried over: fresh tokens; the started HIT is resumable
    assert not tokens & set(Assignment.objects.filter(study=restored).values_list("token", flat=True))
    assert {
        table: sorted(map(str, model.objects.filter(pk__in=before[table]).values_list("pk", flat=True)))
        for table, model, _ in TABLES
    } == before
    resumed = assignment_start(study=restored, platform="anonymous", worker_id="slow")
    assert not resumed.created and resumed.assignment.n_answered == 4


def test_worker_reviews_travel_and_an_older_archive_without_them_still_restores(
    make_study, answer_trials, researcher_carol
):
    """A researcher's approve / reject decisions (judgments.reviews) come back with their reasons and times,
    the rejected worker's HITs stay rejected; an archive written before reviews existed (no
    restore/reviews.jsonl) restores with none."""
    import json

    from judgments.models import WorkerReview
    from judgments.reviews import worker_review_set

    study = populate(make_study, answer_trials)
    hashes = {
        wid: Assignment.objects.filter(study=study, worker__assignments__platform_info__session_id=sess)
        .values_list("worker__external_hash", flat=True)
        .first()[:16]
        for wid, sess in (("pid-0", "sess-0"), ("pid-2", "sess-2"))
    }
    worker_review_set(study=study, worker_hash=hashes["pid-0"], decision="approve", user=researcher_carol)
    worker_review_set(
        study=study, worker_hash=hashes["pid-2"], decision="reject", reason="random answers", user=None
    )
    before = sorted(WorkerReview.objects.filter(study=study).values_list("worker_id", "decision", "reason"))
    rejected = set(Assignment.objects.filter(study=study, status="rejected").values_list("pk", flat=True))
    data, _ = export_archive_bytes(study=study)
    delete_study(study)
    restored = study_restore(archive=io.BytesIO(data), owner=researcher_carol)
    after = WorkerReview.objects.filter(study=restored)
    assert sorted(after.values_list("worker_id", "decision", "reason")) == before and len(before) == 2
    assert not after.exclude(decided_by=None).exists()  # the deciding account stays behind
    assert set(Assignment.objects.filter(study=restored, status="rejected").values_list("pk", flat=True)) == (
        rejected
    )

    # the same archive as an older version wrote it: no reviews table, no count for it
    old = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(old, "w") as dst:
        manifest = json.loads(src.read("restore/manifest.json"))
        del manifest["rows"]["reviews"]
        del manifest["files"]["restore/reviews.jsonl"]
        for member in src.infolist():
            if member.filename == "restore/reviews.jsonl":
                continue
            body = src.read(member)
            if member.filename == "restore/manifest.json":
                body = json.dumps(manifest).encode()
            dst.writestr(member, body)
    delete_study(restored)
    again = study_restore(archive=io.BytesIO(old.getvalue()), owner=researcher_carol)
    assert again.items.exists() and not WorkerReview.objects.filter(study=again).exists()


def test_every_stored_field_travels_except_credentials_bookkeeping_and_client_hashes():
    from django.apps import apps

    for model in (Study, *(m for _, m, _ in TABLES)):
        names = {f.attname for f in model._meta.concrete_fields}
        assert names & SKIPPED <= {
            "updated_at",
            "token",
            "public_id",
            "owner_id",
            "client_hash",
            "decided_by_id",  # the deciding researcher is a user of the exporting deployment
        }, model
    exported = {m for _, m, _ in TABLES} | {Study}
    # every model holding a study's collected data is in the dump (derived ones are retrained/re-exported)
    for model in apps.get_app_config("judgments").get_models():
        assert model in exported, model


def test_damaged_or_duplicate_archives_are_refused(make_study, answer_trials):
    from core.exceptions import ApplicationError

    study = populate(make_study, answer_trials)
    data, _ = export_archive_bytes(study=study)
    with pytest.raises(ApplicationError, match="already in this database") as err:
        study_restore(archive=io.BytesIO(data))
    assert err.value.status_code == 409

    def rewrite(change):
        out = io.BytesIO()
        with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
            for info in src.infolist():
                content = change(info.filename, src.read(info))
                if content is not None:
                    dst.writestr(info, content)
        return out.getvalue()

    tampered = rewrite(
        lambda name, b: b.replace(b'"left"', b'"right"', 1) if name == "restore/judgments.jsonl" else b
    )
    with pytest.raises(ApplicationError, match="does not match its sha256"):
        study_restore(archive=io.BytesIO(tampered))
    missing = rewrite(lambda name, b: None if name.startswith("restore/media/") else b)
    with pytest.raises(ApplicationError, match="missing"):
        study_restore(archive=io.BytesIO(missing))
    with pytest.raises(ApplicationError, match="no restore/ section"):
        study_restore(archive=io.BytesIO(rewrite(lambda name, b: None if name.startswith("restore/") else b)))
    with pytest.raises(ApplicationError, match="not a zip"):
        study_restore(archive=io.BytesIO(b"PK\x03\x04 nope"))
    assert Study.objects.filter(pk=study.pk).count() == 1


@pytest.mark.integration
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_study_exported_from_postgres_restores_into_a_fresh_database(
    postgres, make_study, answer_trials, tmp_path
):
    """PostgreSQL -> a new SQLite database in another process (`manage.py migrate`, `study_restore`,
    `study_export`): the second export is byte-identical to the first."""
    study = populate(make_study, answer_trials)
    original, _ = export_archive_bytes(study=study)
    (tmp_path / "a.zip").write_bytes(original)
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT / 'platform'}:{ROOT}",
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'fresh.sqlite3'}",
        "MEDIA_ROOT": str(tmp_path / "fresh-media"),
        "PERCEPTLAB_DATA_DIR": str(tmp_path / "fresh-data"),
    }

    def manage(*args):
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    manage("migrate", "-v0")
    assert f"restored study {study.pk}" in manage("study_restore", str(tmp_path / "a.zip"))
    manage("study_export", str(study.pk), "--out", str(tmp_path / "b.zip"))
    assert_same_archive((tmp_path / "b.zip").read_bytes(), original)
    done = subprocess.run(
        [sys.executable, "manage.py", "study_restore", str(tmp_path / "a.zip")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode != 0 and "already in this database" in done.stderr


def test_an_archive_from_before_adaptive_collection_restores_with_its_targets_and_choice_counts(
    make_study, answer_trials, researcher_carol
):
    """Old archives lack the items' active / propensity / sampler_version / score / n_target / n_ones and
    the study's train_budget: they restore as a study without a pool, every item active at its split's
    count, n_ones recounted from the accepted judgments."""
    import hashlib
    import json

    new = {"active", "propensity", "sampler_version", "score", "n_target", "n_ones"}
    study = populate(make_study, answer_trials)
    expected = dict(Item.objects.filter(study=study).values_list("index", "n_ones"))
    assert any(expected.values())
    data, _ = export_archive_bytes(study=study)
    delete_study(study)
    old = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(old, "w") as dst:
        manifest = json.loads(src.read("restore/manifest.json"))
        bodies = {}
        for name, drop in (("restore/items.jsonl", new), ("restore/study.jsonl", {"train_budget"})):
            rows = [json.loads(line) for line in src.read(name).decode().splitlines()]
            assert all(drop <= set(row) for row in rows)  # today's archives carry them
            bodies[name] = "".join(
                json.dumps({k: v for k, v in row.items() if k not in drop}) + "\n" for row in rows
            ).encode()
            manifest["files"][name] = hashlib.sha256(bodies[name]).hexdigest()
        for member in src.infolist():
            body = bodies.get(member.filename) or src.read(member)
            if member.filename == "restore/manifest.json":
                body = json.dumps(manifest).encode()
            dst.writestr(member, body)
    restored = study_restore(archive=io.BytesIO(old.getvalue()), owner=researcher_carol)
    assert restored.train_budget is None
    items = Item.objects.filter(study=restored)
    assert dict(items.values_list("index", "n_ones")) == expected
    assert set(items.values_list("n_target", "active", "propensity")) == {(3, True, None)}


def test_hit_tallies_are_counted_again_on_restore_from_an_archive_without_or_with_wrong_ones(
    make_study, answer_trials, researcher_carol
):
    """An archive written before the HITs kept judgment counters (judgments.tallies) restores, and a
    hand-edited counter is not believed: the restore counts them from the restored judgments."""
    import hashlib
    import json

    from judgments import tallies

    study = populate(make_study, answer_trials)
    kept = sorted(Assignment.objects.filter(study=study).values_list("pk", *tallies.FIELDS.values()))
    assert any(sum(row[1:]) for row in kept)
    data, _ = export_archive_bytes(study=study)
    delete_study(study)

    name = "restore/assignments.jsonl"
    edited = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(edited, "w") as dst:
        rows = [json.loads(line) for line in src.read(name).decode().splitlines() if line]
        for k, row in enumerate(rows):
            for field in tallies.FIELDS.values():
                if k == 0:
                    row[field] = 999  # hand-edited
                else:
                    row.pop(field)  # written before the counters existed
        body = "".join(json.dumps(row) + "\n" for row in rows).encode()
        manifest = json.loads(src.read("restore/manifest.json"))
        manifest["files"][name] = hashlib.sha256(body).hexdigest()
        for member in src.infolist():
            if member.filename == name:
                dst.writestr(member, body)
            elif member.filename == "restore/manifest.json":
                dst.writestr(member, json.dumps(manifest).encode())
            else:
                dst.writestr(member, src.read(member))
    restored = study_restore(archive=io.BytesIO(edited.getvalue()), owner=researcher_carol)
    assert tallies.mismatches(study_id=restored.pk) == {}
    again = sorted(Assignment.objects.filter(study=restored).values_list("pk", *tallies.FIELDS.values()))
    assert again == kept
