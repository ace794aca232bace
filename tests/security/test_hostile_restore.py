"""Attacks on `study_restore` with crafted export archives. The attacker edits the restore/ section of a real
export and recomputes the manifest (it is inside the archive, so its digests prove nothing). Each test is
one attack; each asserts that it now fails and that nothing of anyone else's changed."""

from __future__ import annotations

import hashlib
import io
import json
import uuid
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.exceptions import ApplicationError
from exports.restore import study_restore
from exports.services import export_archive_bytes
from judgments.assignments import assignment_start
from judgments.models import Assignment, Judgment, Trial, Worker
from judgments.qc import assignment_submit
from studies.models import Item, Study

pytestmark = pytest.mark.django_db
TABLES = ("study", "items", "workers", "assignments", "trials", "judgments")


def png(seed: int, side: int = 16) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray((np.random.default_rng(seed).random((side, side, 3)) * 255).astype("uint8")).save(
        buffer, format="PNG"
    )
    return buffer.getvalue()


def read_restore(data: bytes) -> tuple[dict[str, list[dict]], dict[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        tables = {
            t: [json.loads(line) for line in zf.read(f"restore/{t}.jsonl").splitlines()] for t in TABLES
        }
        media = {
            n[len("restore/media/") :]: zf.read(n) for n in zf.namelist() if n.startswith("restore/media/")
        }
    return tables, media


def forge(
    tables: dict[str, list[dict]], media: dict[str, bytes], extra: dict[str, bytes] | None = None
) -> io.BytesIO:
    """A restore/ section with a manifest that matches whatever it holds (what an attacker writes)."""
    files, out = {}, io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for table in TABLES:
            body = "".join(json.dumps(row, sort_keys=True) + "\n" for row in tables[table]).encode()
            zf.writestr(f"restore/{table}.jsonl", body)
            files[f"restore/{table}.jsonl"] = hashlib.sha256(body).hexdigest()
        for rel, body in {**{f"media/{k}": v for k, v in media.items()}, **(extra or {})}.items():
            zf.writestr(f"restore/{rel}", body)
            files[f"restore/{rel}"] = hashlib.sha256(body).hexdigest()
        manifest = {
            "format": "perceptlab-restore/1",
            "rows": {t: len(tables[t]) for t in TABLES},
            "files": files,
        }
        zf.writestr("restore/manifest.json", json.dumps(manifest))
    out.seek(0)
    return out


def fresh_ids(tables: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """The attacker's own study under new ids (so that it is restorable next to the original)."""
    new = {}
    for table in TABLES:
        for row in tables[table]:
            new.setdefault(row["id"], str(uuid.uuid4()))
    keys = ("id", "study_id", "item_id", "worker_id", "assignment_id", "trial_id")
    return {
        t: [{k: (new.get(v, v) if k in keys else v) for k, v in row.items()} for row in rows]
        for t, rows in tables.items()
    }


@pytest.fixture
def victim(make_study, researcher_dave):
    """Dave's study and its stimuli: what the attacks aim at."""
    return make_study(n_test=4, n_sentinels=1, n_practice=0, owner=researcher_dave, name="dave's")


def dave_state(study, settings) -> dict:
    stimuli = Path(settings.MEDIA_ROOT) / "stimuli"
    return {
        "items": sorted(
            Item.objects.filter(study=study).values_list("id", "index", "ref_image", "p0_image", "p1_image")
        ),
        "assignments": Assignment.objects.filter(study=study).count(),
        "files": {p.name: (p.read_bytes(), p.stat().st_ino) for p in stimuli.iterdir()},
    }


@pytest.fixture
def attacker_export(make_study, answer_trials, researcher_carol):
    """Carol's own small study with judgments, exported; the archive's restore/ tables and images."""
    study = make_study(
        n_test=4, n_sentinels=1, n_practice=0, owner=researcher_carol, name="carol's", config={"hit_size": 5}
    )
    a = assignment_start(study=study, platform="anonymous", worker_id="carol-worker").assignment
    answer_trials(a, lambda t, i: i.expected or "p0")
    assignment_submit(token=a.token)
    data, _ = export_archive_bytes(study=study)
    return read_restore(data)


@pytest.fixture
def forged(attacker_export):
    """A fresh copy of Carol's restore/ section under new ids, to edit: (tables, media)."""
    return lambda: (fresh_ids(attacker_export[0]), dict(attacker_export[1]))


def counts() -> dict:
    return {
        "studies": Study.objects.count(),
        "items": Item.objects.count(),
        "workers": Worker.objects.count(),
        "assignments": Assignment.objects.count(),
        "trials": Trial.objects.count(),
        "judgments": Judgment.objects.count(),
    }


def test_rows_naming_another_study_land_in_the_restored_study(victim, forged, settings, researcher_carol):
    tables, media = forged()
    before = dave_state(victim, settings)
    for table in ("items", "assignments"):
        for row in tables[table]:
            row["study_id"] = str(victim.pk)  # "insert these into Dave's study"
    restored = study_restore(archive=forge(tables, media), owner=researcher_carol)
    assert dave_state(victim, settings) == before
    assert restored.owner == researcher_carol and str(restored.pk) == tables["study"][0]["id"]
    assert Item.objects.filter(study=restored).count() == len(tables["items"])
    assert Assignment.objects.filter(study=restored).count() == len(tables["assignments"])


def test_rows_reusing_existing_ids_are_refused(victim, forged, settings, researcher_carol):
    tables, media = forged()
    victim_item = Item.objects.filter(study=victim).first()
    before, state = counts(), dave_state(victim, settings)
    own = tables["items"][0]["id"]
    tables["items"][0]["id"] = str(victim_item.pk)  # take over Dave's item row
    for table in ("trials", "judgments"):
        for row in tables[table]:
            if row["item_id"] == own:
                row["item_id"] = str(victim_item.pk)
    with pytest.raises(ApplicationError, match="already in this database") as err:
        study_restore(archive=forge(tables, media), owner=researcher_carol)
    assert err.value.status_code == 409
    assert counts() == before and dave_state(victim, settings) == state


def test_rows_pointing_at_rows_outside_the_archive_are_refused(victim, forged, settings, researcher_carol):
    tables, media = forged()
    before, state = counts(), dave_state(victim, settings)
    tables["trials"][0]["item_id"] = str(
        Item.objects.filter(study=victim).first().pk
    )  # a trial on Dave's item
    with pytest.raises(ApplicationError, match="is not a row of this archive") as err:
        study_restore(archive=forge(tables, media), owner=researcher_carol)
    assert err.value.status_code == 400 and err.value.extra["file"] == "restore/trials.jsonl"
    assert counts() == before and dave_state(victim, settings) == state


def test_overwriting_another_studys_stimulus_with_other_bytes_is_refused(
    victim, forged, settings, researcher_carol
):
    tables, media = forged()
    target = Item.objects.filter(study=victim).first().ref_image  # stimuli/<sha>.png of Dave's
    before, state = counts(), dave_state(victim, settings)
    media.pop(tables["items"][0]["ref_image"])
    tables["items"][0]["ref_image"] = target
    media[target] = png(999)  # a valid PNG, but not the one that hashes to this name
    with pytest.raises(ApplicationError, match="does not hash to its name"):
        study_restore(archive=forge(tables, media), owner=researcher_carol)
    assert counts() == before and dave_state(victim, settings) == state


def test_an_existing_stimulus_is_never_rewritten_even_with_the_right_bytes(
    victim, forged, settings, researcher_carol
):
    tables, media = forged()
    state = dave_state(victim, settings)
    target = Item.objects.filter(study=victim).first().ref_image
    media.pop(tables["items"][0]["ref_image"])  # make_study's images are all distinct: now unreferenced
    tables["items"][0]["ref_image"] = target
    media[target] = (Path(settings.MEDIA_ROOT) / target).read_bytes()
    study_restore(archive=forge(tables, media), owner=researcher_carol)
    after = dave_state(victim, settings)["files"]
    assert all(after[name] == state["files"][name] for name in state["files"])  # same bytes, same inode


@pytest.mark.parametrize(
    "rel,body,word",
    [
        ("media/stimuli/evil.html", b"<script>alert(document.cookie)</script>", "unexpected file"),
        ("media/stimuli/evil.js", b"fetch('/api/v1/studies/')", "unexpected file"),
        ("media/stimuli/x/../evil.svg", b"<svg onload=alert(1)>", "unexpected file"),
        (
            "media/stimuli/" + hashlib.sha256(b"<html><script>alert(1)</script>").hexdigest() + ".png",
            b"<html><script>alert(1)</script>",
            "not a readable image",
        ),  # hashes to its name, but no PNG
    ],
)
def test_html_or_script_under_stimuli_is_refused(forged, settings, researcher_carol, rel, body, word):
    tables, media = forged()
    for path in (Path(settings.MEDIA_ROOT) / "stimuli").iterdir():
        path.unlink()  # so that the archive's own images would be written if the restore went ahead
    if rel.endswith(".png"):
        tables["items"][0]["p1_image"] = rel[len("media/") :]
    before = counts()
    with pytest.raises(ApplicationError, match=word):
        study_restore(archive=forge(tables, media, {rel: body}), owner=researcher_carol)
    assert counts() == before and not list((Path(settings.MEDIA_ROOT) / "stimuli").iterdir())


@pytest.mark.parametrize(
    "path",
    [
        "/etc/hostname",
        "../../var/secret_key",
        "stimuli/../../var/secret_key",
        "exports/0d1f/dave-v1.zip",
        "imports/x/y.zip",
        "stimuli/" + "A" * 64 + ".png",
        "stimuli/" + "a" * 64 + ".png.html",
        "stimuli//" + "a" * 64 + ".png",
    ],
)
def test_image_paths_outside_stimuli_are_refused(forged, settings, researcher_carol, path):
    tables, media = forged()
    tables["items"][-1]["ref_image"] = path  # so that the next export would ship this file
    before = counts()
    with pytest.raises(ApplicationError, match="is not a stimulus path") as err:
        study_restore(archive=forge(tables, media), owner=researcher_carol)
    assert err.value.status_code == 400 and err.value.extra["file"] == "restore/items.jsonl"
    assert counts() == before


def test_an_export_never_ships_a_file_outside_stimuli(make_study, answer_trials, settings):
    """Defence in depth: a row that names a secret file (written before these checks existed) makes the
    export fail instead of copying the file into the archive."""
    secret = Path(settings.MEDIA_ROOT).parent / "secret_key"
    secret.write_text("do-not-ship-me")
    study = make_study(n_test=2, n_sentinels=1, n_practice=0, config={"hit_size": 3})
    a = assignment_start(study=study, platform="anonymous", worker_id="w").assignment
    answer_trials(a, lambda t, i: i.expected or "p0")
    Item.objects.filter(study=study, role="test").update(ref_image="../secret_key")
    with pytest.raises(ApplicationError, match="not a stimulus path"):
        export_archive_bytes(study=study)


def test_a_bad_file_late_in_the_archive_leaves_no_rows_and_no_files(forged, settings, researcher_carol):
    tables, media = forged()
    stimuli = Path(settings.MEDIA_ROOT) / "stimuli"
    for path in stimuli.iterdir():
        path.unlink()
    before = counts()
    # the last image (in archive order) is damaged: a truncated PNG that still hashes to its name
    last = max(media)
    broken = media[last][: len(media[last]) // 2]
    del media[last]
    broken_rel = f"stimuli/{hashlib.sha256(broken).hexdigest()}.png"
    media[broken_rel] = broken
    for row in tables["items"]:
        for key in ("ref_image", "p0_image", "p1_image"):
            if row[key] == last:
                row[key] = broken_rel
    with pytest.raises(ApplicationError, match="not a readable image"):
        study_restore(archive=forge(tables, media), owner=researcher_carol)
    assert counts() == before and not list(stimuli.iterdir())
    # and the last judgment row invalid: same outcome, after every image has passed
    tables2, media2 = forged()
    tables2["judgments"][-1]["response"] = "x" * 5000
    with pytest.raises(ApplicationError, match="judgments.jsonl line"):
        study_restore(archive=forge(tables2, media2), owner=researcher_carol)
    assert counts() == before and not list(stimuli.iterdir())


def test_a_zip_bomb_in_the_restore_section_is_refused_unread(forged, researcher_carol):
    tables, media = forged()
    before = counts()
    bomb = b"\0" * (20 * 1024**2)  # 20 MB of zeros, ~20 KB compressed
    with pytest.raises(ApplicationError, match="too large or too compressed"):
        study_restore(
            archive=forge(
                tables, media, {"media/stimuli/" + hashlib.sha256(bomb).hexdigest() + ".png": bomb}
            ),
            owner=researcher_carol,
        )
    assert counts() == before


def test_a_restored_copy_joins_no_other_owner(forged, researcher_carol, researcher_dave):
    """The study row carries no owner: the copy belongs to whoever restores it, never to an owner the
    archive names."""
    tables, media = forged()
    tables["study"][0]["owner_id"] = researcher_dave.pk
    restored = study_restore(archive=forge(tables, media), owner=researcher_carol)
    assert (
        restored.owner == researcher_carol
        and not Study.objects.filter(owner=researcher_dave, pk=restored.pk).exists()
    )


@pytest.mark.parametrize(
    "table,change",
    [
        ("items", lambda row: row.update(role="admin")),
        ("items", lambda row: row.update(index=-1)),
        ("judgments", lambda row: row.update(created_at=[1, 2])),
        ("assignments", lambda row: row.update(id="not-a-uuid")),
        ("study", lambda row: row.update(config={"hit_size": "all of them"})),
    ],
)
def test_malformed_rows_get_a_clear_error_not_a_crash(forged, researcher_carol, table, change):
    tables, media = forged()
    change(tables[table][-1])
    before = counts()
    with pytest.raises(ApplicationError) as err:
        study_restore(archive=forge(tables, media), owner=researcher_carol)
    assert err.value.status_code == 400 and (table in err.value.message or "hit_size" in err.value.message)
    assert counts() == before


def test_absurdly_nested_json_is_refused(forged, researcher_carol):
    tables, media = forged()
    archive = forge(tables, media)
    nested = b"[" * 100_000 + b"]" * 100_000 + b"\n"
    out = io.BytesIO()
    with zipfile.ZipFile(archive) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
        manifest = json.loads(src.read("restore/manifest.json"))
        manifest["files"]["restore/judgments.jsonl"] = hashlib.sha256(nested).hexdigest()
        for name in src.namelist():
            if name not in ("restore/manifest.json", "restore/judgments.jsonl"):
                dst.writestr(name, src.read(name))
        dst.writestr("restore/judgments.jsonl", nested)
        dst.writestr("restore/manifest.json", json.dumps(manifest))
    with pytest.raises(ApplicationError, match="judgments.jsonl"):
        study_restore(archive=io.BytesIO(out.getvalue()), owner=researcher_carol)
