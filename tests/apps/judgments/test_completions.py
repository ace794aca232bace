"""The completions list researchers pay from: JSON a page at a time, the CSV every row, streamed; neither
reads more than a page (JSON) or a chunk (CSV) of HITs at once, so a BAPPS-size study (tens of thousands
of HITs) costs a page's time, and bad ?page= values get a message."""

from __future__ import annotations

import csv
import io

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from judgments import completions
from judgments.assignments import assignment_start
from judgments.qc import assignment_submit

pytestmark = pytest.mark.django_db


@pytest.fixture
def submitted(make_study, answer_trials, researcher_carol):
    """A study with 7 submitted HITs, SESSION-0 .. SESSION-6 in order of submission, and one left open."""
    study = make_study(n_test=30, n_sentinels=1, n_practice=0, owner=researcher_carol, config={"hit_size": 2})
    for n in range(8):
        a = assignment_start(
            study=study,
            platform="prolific",
            worker_id=f"PID-{n}",
            platform_info={"study_id": "S", "session_id": f"SESSION-{n}"},
        ).assignment
        if n < 7:
            answer_trials(a, lambda t, i: i.expected or "p0")
            assignment_submit(token=a.token)
    client = APIClient()
    client.force_authenticate(researcher_carol)
    return study, client


def test_json_is_paged_in_order_of_submission(submitted, monkeypatch):
    study, client = submitted
    monkeypatch.setattr(completions, "COMPLETIONS_PER_PAGE", 3)
    url = f"/api/v1/studies/{study.pk}/completions/"
    first = client.get(url).json()
    assert first["count"] == 7 and first["previous"] is None
    assert [r["session_id"] for r in first["results"]] == ["SESSION-0", "SESSION-1", "SESSION-2"]
    assert first["next"].endswith(f"{url}?page=2")
    last = client.get(url + "?page=3").json()
    assert [r["session_id"] for r in last["results"]] == ["SESSION-6"]
    assert last["next"] is None and last["previous"].endswith("?page=2")
    # a stale link past the end shows the last page, as the workers table does
    assert client.get(url + "?page=99").json()["results"] == last["results"]
    sessions = [r["session_id"] for k in (1, 2, 3) for r in client.get(f"{url}?page={k}").json()["results"]]
    assert sessions == [f"SESSION-{n}" for n in range(7)]  # every row once, none twice


@pytest.mark.parametrize("page", ["0", "-1", "x", "1.5", "9999999999", "١"])
def test_a_bad_page_is_refused_with_a_message(submitted, page):
    study, client = submitted
    r = client.get(f"/api/v1/studies/{study.pk}/completions/", {"page": page})
    assert r.status_code == 400
    assert r.json()["message"] == "page must be a positive whole number"


def test_a_page_reads_the_same_number_of_queries_whatever_the_page(submitted, monkeypatch):
    study, client = submitted
    monkeypatch.setattr(completions, "COMPLETIONS_PER_PAGE", 2)
    counts = []
    for page in (1, 4):
        with CaptureQueriesContext(connection) as queries:
            assert client.get(f"/api/v1/studies/{study.pk}/completions/?page={page}").status_code == 200
        counts.append(len(queries))
    assert counts[0] == counts[1]


def test_the_csv_streams_every_row(submitted):
    study, client = submitted
    r = client.get(f"/api/v1/studies/{study.pk}/completions/?format=csv")
    assert r.status_code == 200 and r.streaming
    assert r["Content-Type"].startswith("text/csv")
    assert r["Content-Disposition"] == f'attachment; filename="completions-{study.pk}.csv"'
    table = list(csv.DictReader(io.StringIO(b"".join(r.streaming_content).decode())))
    assert [row["session_id"] for row in table] == [f"SESSION-{n}" for n in range(7)]
    assert list(table[0]) == list(completions.COLUMNS)


def test_the_csv_comes_in_pieces_of_about_64_kib():
    rows = ({c: f"row-{n}-" + "x" * 200 for c in completions.COLUMNS} for n in range(2000))
    pieces = list(completions.completions_csv(rows))
    assert len(pieces) > 5 and all(len(p) < 70_000 for p in pieces)
    table = list(csv.DictReader(io.StringIO("".join(pieces))))
    assert len(table) == 2000 and table[-1]["session_id"].startswith("row-1999-")


def test_an_error_is_csv_too(researcher_dave, submitted):
    study, _ = submitted
    other = APIClient()
    other.force_authenticate(researcher_dave)
    r = other.get(f"/api/v1/studies/{study.pk}/completions/?format=csv")
    assert r.status_code == 404 and r["Content-Type"].startswith("text/csv")
    assert r.content.decode().splitlines()[0] == "message"


def test_a_study_api_does_not_count_the_studys_items(submitted):
    """owned_study reads the study alone: counting its items (0.3 s at 187k) is for the study detail, which
    counts them by role over an index and gives the numbers the study list does."""
    study, client = submitted
    with CaptureQueriesContext(connection) as queries:
        assert client.get(f"/api/v1/studies/{study.pk}/completions/").status_code == 200
    assert not [q["sql"] for q in queries.captured_queries if "studies_item" in q["sql"]]
    detail = client.get(f"/api/v1/studies/{study.pk}/").json()
    (listed,) = [s for s in client.get("/api/v1/studies/").json() if s["id"] == str(study.pk)]
    assert (detail["n_items"], detail["n_sentinels"]) == (listed["n_items"], listed["n_sentinels"]) == (31, 1)


def test_a_database_lost_mid_csv_is_the_apis_503_not_a_broken_download(submitted, monkeypatch):
    """The CSV's first rows are read inside the view, so an outage gets the API's answer (503 +
    Retry-After), not a stream that fails after its 200 was sent."""
    from django.db import OperationalError, connections

    study, client = submitted

    def down(**kwargs):
        raise OperationalError("server closed the connection unexpectedly")
        yield  # a generator, as study_completions is

    monkeypatch.setattr(completions, "study_completions", down)
    monkeypatch.setattr(connections["default"], "vendor", "postgresql")
    r = client.get(f"/api/v1/studies/{study.pk}/completions/?format=csv")
    assert r.status_code == 503 and r["Retry-After"] == "1"


def test_the_study_list_counts_items_without_joining_them(submitted, make_study, researcher_carol):
    """The lists count each shown study's items in a subquery on item_tally_idx, not through a join that
    counts every item of every visible study; the numbers are the same."""
    study, client = submitted
    other = make_study(n_test=4, n_sentinels=2, n_practice=0, owner=researcher_carol)
    with CaptureQueriesContext(connection) as queries:
        listed = {s["id"]: (s["n_items"], s["n_sentinels"]) for s in client.get("/api/v1/studies/").json()}
    assert listed[str(study.pk)] == (31, 1) and listed[str(other.pk)] == (6, 2)
    (query,) = [q["sql"] for q in queries.captured_queries if "studies_item" in q["sql"]]
    assert "JOIN" not in query.upper()
