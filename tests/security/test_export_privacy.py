"""Attack: a dataset export, meant to be published, identified participants by their browser's user agent and
dated every answer to the millisecond with the client's epoch clock (enough to match them with a crowd
platform's submission records). Now exports keep the display conditions (screen, devicePixelRatio, refresh
rate), drop the user agent unless the researcher asks for it, and give client times relative to each HIT;
judgments.jsonl and restore/ alike, and a restored study still exports to the same bytes."""

from __future__ import annotations

import io
import json
import uuid
import zipfile

import pytest
from rest_framework.test import APIClient

from exports.models import Export
from exports.restore import study_restore
from exports.services import export_archive_bytes, export_build
from judgments.models import Assignment, Judgment, Trial
from studies.models import Item

pytestmark = pytest.mark.django_db
UA = "Mozilla/5.0 (X11; Linux x86_64; rv:131.0) Gecko/20100101 Firefox/131.0 unique-build-7731"
EPOCH = 1_764_000_000_000.0  # client epoch ms (late 2025)


def annotate(study, n_workers=2):
    """Annotators answer over HTTP as the page does: epoch client times and the full display profile."""
    client = APIClient()
    for w in range(n_workers):
        body = client.post(
            f"/api/v1/studies/{study.pk}/assignments/",
            {"platform": "anonymous", "consent": True, "worker_id": f"w-{w}"},
            format="json",
        ).json()
        t0 = EPOCH + w * 3_600_000 + 0.25
        for n, trial in enumerate(body["trials"]):
            shown = t0 + n * 1500.125
            r = client.post(
                f"/api/v1/assignments/{body['token']}/judgments/",
                {
                    "trial": trial["id"],
                    "response": "left",
                    "rt_ms": 900.5,
                    "idempotency_key": uuid.uuid4().hex,
                    "client_shown_at": shown,
                    "client_answered_at": shown + 900.5,
                    "display": {
                        "viewport": [1280, 800],
                        "screen": [1920, 1080],
                        "device_pixel_ratio": 2,
                        "patch_css_px": 256,
                        "refresh_hz": 60,
                        "user_agent": UA,
                    },
                },
                format="json",
            )
            assert r.status_code == 201, r.content
        assert client.post(f"/api/v1/assignments/{body['token']}/submit/").status_code == 200


def members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def jsonl(data: bytes) -> list[dict]:
    return [json.loads(line) for line in data.splitlines()]


def numbers(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from numbers(v)
    elif isinstance(value, list):
        for v in value:
            yield from numbers(v)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield value


def no_epoch_times(data: bytes) -> bool:
    """No number in any JSON row is an epoch-ms client time (> 1e11 ms: after 1973)."""
    return all(n < 1e11 for row in jsonl(data) for n in numbers(row))


def test_an_export_publishes_no_user_agent_and_no_epoch_times_by_default(
    make_study, researcher_carol, settings
):
    study = make_study(n_test=4, n_sentinels=1, n_practice=1, owner=researcher_carol)
    annotate(study)
    assert Judgment.objects.filter(display__user_agent=UA).exists()  # stored, for the researcher who asks
    # the researcher exports through the API, as a dataset to publish
    client = APIClient()
    client.force_authenticate(researcher_carol)
    r = client.post(f"/api/v1/studies/{study.pk}/exports/", {}, format="json")
    assert r.status_code == 202 and r.json()["include_user_agent"] is False
    export = export_build(export=Export.objects.get(pk=r.json()["id"]))
    files = members((settings.MEDIA_ROOT / export.archive).read_bytes())
    for name, data in files.items():
        if not name.endswith((".png", ".npy")):
            assert b"Mozilla" not in data and b"unique-build-7731" not in data, name
        if name.endswith(".jsonl"):
            assert no_epoch_times(data), name  # no client epoch time, in any table
    rows = jsonl(files["judgments.jsonl"])
    assert rows and all(
        r["display"]
        == {
            "viewport": [1280, 800],
            "screen": [1920, 1080],
            "device_pixel_ratio": 2,
            "patch_css_px": 256,
            "refresh_hz": 60,
        }
        for r in rows
    )
    assert "client_shown_at" not in rows[0] and "client_answered_at" not in rows[0]
    for a in {r["assignment"] for r in rows}:
        hit = sorted((r for r in rows if r["assignment"] == a), key=lambda r: r["shown_ms"])
        # practice (not in judgments.jsonl) was the HIT's first trial at 0 ms: the rest follow 1500.125 ms
        # apart
        assert [r["shown_ms"] for r in hit] == [round(1500.125 * n, 3) for n in range(1, len(hit) + 1)]
        assert all(r["answered_ms"] == round(r["shown_ms"] + 900.5, 3) for r in hit)
    restored_rows = jsonl(files["restore/judgments.jsonl"])
    assert len(restored_rows) == Judgment.objects.filter(assignment__study=study).count()
    assert {r["client_shown_at"] for r in restored_rows if r["kind"] == Trial.Kind.PRACTICE} == {0.0}
    assert all("user_agent" not in r["display"] for r in restored_rows)


def test_the_user_agent_is_published_only_when_the_researcher_asks(make_study, researcher_carol, settings):
    study = make_study(n_test=2, n_sentinels=1, n_practice=0, owner=researcher_carol)
    annotate(study, n_workers=1)
    client = APIClient()
    client.force_authenticate(researcher_carol)
    r = client.post(f"/api/v1/studies/{study.pk}/exports/", {"include_user_agent": True}, format="json")
    assert r.status_code == 202 and r.json()["include_user_agent"] is True
    export = export_build(export=Export.objects.get(pk=r.json()["id"]))
    files = members((settings.MEDIA_ROOT / export.archive).read_bytes())
    assert {row["display"]["user_agent"] for row in jsonl(files["judgments.jsonl"])} == {UA}
    assert json.loads(files["export.json"])["include_user_agent"] is True
    assert no_epoch_times(files["judgments.jsonl"]) and no_epoch_times(
        files["restore/judgments.jsonl"]
    )  # still relative
    r = client.post(f"/api/v1/studies/{study.pk}/exports/", {"include_user_agent": "perhaps"}, format="json")
    assert r.status_code == 400


@pytest.mark.parametrize("include_user_agent", [False, True])
def test_a_restored_study_still_exports_to_the_same_bytes(
    make_study, settings, researcher_carol, include_user_agent
):
    study = make_study(n_test=4, n_sentinels=1, n_practice=1, owner=researcher_carol)
    annotate(study)
    original, _ = export_archive_bytes(study=study, include_user_agent=include_user_agent)
    study_id = study.pk
    Judgment.objects.filter(assignment__study=study).delete()
    Trial.objects.filter(assignment__study=study).delete()
    Assignment.objects.filter(study=study).delete()
    Item.objects.filter(study=study).delete()
    study.delete()
    restored = study_restore(archive=io.BytesIO(original), owner=researcher_carol)
    assert restored.pk == study_id
    # the restored database holds only what was published
    assert not Judgment.objects.filter(assignment__study=restored, client_shown_at__gt=1e9).exists()
    assert (
        Judgment.objects.filter(assignment__study=restored, display__has_key="user_agent").exists()
        == include_user_agent
    )
    again, _ = export_archive_bytes(study=restored, include_user_agent=include_user_agent)
    assert again == original


def test_exports_never_publish_the_client_address_hash(make_study, researcher_carol):
    """The salted hash of an annotator's address exists for this deployment's abuse caps only: the restore/
    section of an export (which otherwise carries every stored field) leaves it out."""
    study = make_study(n_test=6, n_sentinels=2, n_practice=0, owner=researcher_carol, config={"hit_size": 3})
    annotate(study)
    Assignment.objects.filter(study=study).update(client_hash="f" * 64)
    data, _ = export_archive_bytes(study=study)
    rows = jsonl(members(data)["restore/assignments.jsonl"])
    assert rows and all("client_hash" not in row for row in rows)
    assert b"f" * 64 not in data
