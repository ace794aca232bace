"""An export written while judgments stream in is a consistent snapshot (Postgres, REPEATABLE READ)."""

import io
import json
import threading
import time
import zipfile

import pytest
from django.db import connection

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


@pytest.mark.django_db(transaction=True)
def test_an_export_taken_under_streaming_judgments_is_consistent(postgres, make_study, answer_trials):
    from exports.services import export_archive_bytes
    from judgments.assignments import assignment_start
    from judgments.qc import assignment_submit

    study = make_study(
        n_test=40,
        n_sentinels=4,
        n_practice=0,
        config={"hit_size": 10, "judgments_per_item": {"train": 5, "val": 5}},
    )
    stop = threading.Event()
    streamed = [0]
    hits = [0]

    def stream():
        try:
            w = 0
            while not stop.is_set():
                a = assignment_start(study=study, platform="anonymous", worker_id=f"stream-{w}").assignment
                if w % 2:  # every other worker fails the sentinels: excluded when the HIT is submitted
                    policy = lambda t, i: {"p0": "p1", "p1": "p0"}.get(i.expected) or "p1"  # noqa: E731
                else:
                    policy = lambda t, i, w=w: i.expected or ("p0", "p1")[(i.index + w) % 2]  # noqa: E731
                streamed[0] += answer_trials(a, policy)
                assignment_submit(token=a.token)
                w += 1
                hits[0] = w
        finally:
            connection.close()

    thread = threading.Thread(target=stream)
    thread.start()
    try:
        archives = []
        deadline = time.time() + 90
        while (
            len(archives) < 4 or hits[0] < 3
        ) and time.time() < deadline:  # exports race honest and excluded HITs
            archives.append(export_archive_bytes(study=study)[0])
    finally:
        stop.set()
        thread.join(60)
    assert streamed[0] > 0
    sizes = set()
    for data in archives:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            items = [json.loads(x) for x in zf.read("items.jsonl").splitlines()]
            rows = [json.loads(x) for x in zf.read("judgments.jsonl").splitlines()]
            meta = json.loads(zf.read("export.json"))
            counted = [r for r in rows if r["counted"]]
            # the votes in the BAPPS labels are exactly the counted judgment rows of the same snapshot
            assert sum(i["n_votes"] for i in items) == len(counted) == meta["n_counted_judgments"]
            per_item = {}
            for r in counted:
                k, n = per_item.get(r["item"], (0, 0))
                per_item[r["item"]] = (k + (r["choice"] == "p1"), n + 1)
            assert {i["id"]: (i["p1_votes"], i["n_votes"]) for i in items} == per_item
            # and every counted row's assignment is in the snapshot's assignment list
            excluded = {
                a["id"]: a["excluded"]
                for a in (json.loads(x) for x in zf.read("assignments.jsonl").splitlines())
            }
            assert all(excluded[r["assignment"]] == r["excluded"] for r in rows)  # one moment in time
            sizes.add(len(rows))
    assert len(sizes) >= 1
    from judgments.models import Assignment

    assert Assignment.objects.filter(study=study, excluded=True).exists()
