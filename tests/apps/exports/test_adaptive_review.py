"""Reviewer rev-adaptive (issue 20): what an export and a restore carry of adaptive collection. Each test
here failed against main when written; see the review report for the fix each one asks for."""

import hashlib
import io
import json
import zipfile

import pytest

from core.exceptions import ApplicationError
from exports.restore import study_restore
from exports.services import export_archive_bytes
from judgments.assignments import assignment_start
from judgments.models import Assignment, Judgment, Trial
from judgments.qc import assignment_submit
from studies.models import Item, Study

pytestmark = pytest.mark.django_db


def test_items_jsonl_gives_the_draw_order_the_des_raj_estimator_needs(make_study, crowd):
    """docs/sampling.md: the propensities undo the sampler's bias through the Des Raj estimator, which
    takes "the t-th drawn item (in draw order, across all rounds)": each q_t is a probability given the
    items drawn before it. A release stores only the propensity (judgments.pool._release), and items.jsonl
    lists items by split, category and index, so the order of the draws, across refills and within one,
    is lost and the estimator cannot be computed from an export. Suggested: Item.draw (a per-study
    sequence number set at release) exported as `draw`."""
    study = make_study(n_test=16, n_sentinels=0, n_practice=0, val_fraction=0.25, config={"hit_size": 1})
    trains = Item.objects.filter(study=study, role="test", split="train")
    trains.update(active=False)
    Study.objects.filter(pk=study.pk).update(train_budget=6)
    study.refresh_from_db()
    crowd(study, 40, lambda t, i: "p1")  # hit_size 1: a refill of 2 at a time, so several rounds
    assert trains.filter(active=True).count() == 6
    data, _ = export_archive_bytes(study=study, version=1)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        items = [json.loads(line) for line in zf.read("items.jsonl").decode().splitlines()]
    drawn = [row for row in items if row["split"] == "train"]
    assert len(drawn) == 6
    assert all("draw" in row for row in drawn), "no draw order in items.jsonl"
    assert sorted(row["draw"] for row in drawn) == list(range(1, 7))


def _stopping_study_with_votes(make_study, answer_trials):
    study = make_study(
        n_test=2,
        n_sentinels=0,
        n_practice=0,
        val_fraction=0,
        config={"hit_size": 1, "judgments_per_item": {"train": [2, 4], "val": 1}},
    )
    a = assignment_start(study=study, platform="anonymous", worker_id="w0").assignment
    answer_trials(a, lambda t, i: "p0")
    assignment_submit(token=a.token)
    return study


def _delete(study):
    Judgment.objects.filter(assignment__study=study).delete()
    Trial.objects.filter(assignment__study=study).delete()
    Assignment.objects.filter(study=study).delete()
    Item.objects.filter(study=study).delete()
    study.delete()


def _crafted(data: bytes, field: str, value) -> bytes:
    """The archive with `field` of every item row set to `value` (the manifest's digest kept valid)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        manifest = json.loads(src.read("restore/manifest.json"))
        rows = [json.loads(line) for line in src.read("restore/items.jsonl").decode().splitlines()]
        body = "".join(json.dumps({**row, field: value}) + "\n" for row in rows).encode()
        manifest["files"]["restore/items.jsonl"] = hashlib.sha256(body).hexdigest()
        for member in src.infolist():
            content = src.read(member)
            if member.filename == "restore/items.jsonl":
                content = body
            elif member.filename == "restore/manifest.json":
                content = json.dumps(manifest).encode()
            dst.writestr(member, content)
    return out.getvalue()


@pytest.mark.parametrize(
    "field, value",
    [
        ("n_ones", 50),  # more choice-1 votes than votes: need_more_votes raises in the answer path (500)
        ("n_target", 1_000_000),  # far past the range's max and the vote budget: the item is served forever
        ("propensity", -0.5),  # not a probability: exports and Des Raj take it as one
        ("propensity", 7.0),
    ],
)
def test_a_restore_refuses_adaptive_counts_and_propensities_no_collection_could_produce(
    make_study, answer_trials, researcher_carol, field, value
):
    """exports.restore takes an archive's n_ones, n_target and propensity as they are (clean_fields only
    checks types and signs). A restored study is then started again by its researcher; with n_ones >
    n_judgments every answer that reaches the item's target fails with ValueError (a 500), and an n_target
    past max keeps the item in the queue past the train-vote budget. Suggested: refuse (400, naming the
    line) n_ones > n_judgments, n_target outside the split's [min, max], propensity outside (0, 1]."""
    study = _stopping_study_with_votes(make_study, answer_trials)
    data, _ = export_archive_bytes(study=study)
    _delete(study)
    with pytest.raises(ApplicationError) as exc:
        study_restore(archive=io.BytesIO(_crafted(data, field, value)), owner=researcher_carol)
    assert exc.value.status_code == 400
