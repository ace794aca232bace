"""`make loadtest-reference` (devtools.reference_loadtest): it reads both trees' load test reports, estimates
today's figures on issue 19's VM from the ratio between the trees, and extracts the reference tree from
the repository's history. The load tests themselves run only under make (minutes each)."""

import subprocess

import pytest

from devtools import loadtest, reference_loadtest
from devtools.reference_loadtest import REFERENCE, ReportError, estimate, parse_report, report
from tests.apps.devtools.conftest import loadtest_measured

# What `manage.py loadtest` of the reference commit printed (its report; the method paragraph shortened)
REFERENCE_OUTPUT = """## Load test: annotators against gunicorn + postgresql

Machine: AMD EPYC, 2 cores, Python 3.11.7, numpy 2.4.6. Command: `make loadtest` (...).

| measure | back to back | paced (300/s offered) |
|---|---|---|
| judgments/s (acknowledged) | 439 | 298 |
| submit latency p50 / p95 / p99 | 418 / 551 / 599 ms | 12 / 66 / 85 ms |
| next-batch latency p50 / p95 / p99 | 444 / 578 / 612 ms | 47 / 97 / 110 ms |
| CPU per judgment: web / PostgreSQL / load generator | 2.8 / 1.2 / 0.3 ms | 3.4 / 1.4 / 0.5 ms |
| HITs completed, errors | 739, 0 | 369, 0 |
| acknowledged answers missing / duplicated / items over target | 0 / 0 / 0 | 0 / 0 / 0 |

Bare Django JSON endpoint (`/livez`), same clients and server: 2359 requests/s (p99 138 ms); back-to-back \
judgments/s are 0.19 of that.

Target (300 judgments/s with p99 submit and next-batch latency under 200 ms, paced run): **met**.
"""


def test_the_reference_trees_report_is_read():
    parsed = parse_report(REFERENCE_OUTPUT)
    assert parsed["livez"] == 2359
    assert parsed["back to back"]["judgments_per_s"] == 439
    assert parsed["paced"] == {
        "judgments_per_s": 298,
        "p99_ms": (85, 110),
        "cpu_ms": {"web": 3.4, "postgres": 1.4, "load generator": 0.5},
    }


def _run(per_s: float, web: float) -> dict:
    return {
        "judgments_per_s": per_s,
        "latency_ms": {op: {"p50": 9, "p95": 20, "p99": 71} for op in ("submit", "next_batch")},
        "cpu_ms": {"web": web, "postgres": 1.24, "load generator": 0.29},
        "hits": 10,
        "errors": [],
    }


def test_todays_report_is_read_the_same_way():
    """Today's load test report (loadtest.report) must stay readable here: a change of its table's layout
    fails this test, not a 9-minute benchmark run."""
    runs = {"back to back": _run(1396.0, 0.69), "paced (300/s offered)": _run(308.0, 1.51)}
    bare = {"requests_per_s": 3093.0, "latency_ms": {"p99": 101.0}}
    measured = loadtest_measured(runs, bare=bare, seconds=30.0, workers=2, flush_ms=2000)
    parsed = parse_report(loadtest.report(measured))
    assert parsed["livez"] == 3093
    assert parsed["back to back"]["judgments_per_s"] == 1396
    assert parsed["paced"]["cpu_ms"] == {"web": 1.51, "postgres": 1.24, "load generator": 0.29}
    assert parsed["paced"]["p99_ms"] == (71, 71)


@pytest.mark.parametrize(
    "text", ["", "| judgments/s (acknowledged) | 1 | 2 |", REFERENCE_OUTPUT.replace("3.4 / 1.4 / 0.5", "-")]
)
def test_anything_else_is_refused_by_name(text):
    with pytest.raises(ReportError, match="missing|unreadable"):
        parse_report(text)


def _tree(web: float, postgres: float, b2b: float) -> dict:
    paced = {"judgments_per_s": 300.0, "p99_ms": (70.0, 60.0), "cpu_ms": {"web": web, "postgres": postgres}}
    return {"livez": 2500.0, "paced": paced, "back to back": {"judgments_per_s": b2b}}


def test_the_estimate_is_the_issues_figure_times_the_mean_ratio():
    rounds = [
        {"reference": _tree(3.4, 1.4, 439), "today": _tree(1.55, 1.26, 1391)},
        {"reference": _tree(3.3, 1.4, 352), "today": _tree(1.50, 1.21, 1631)},
    ]
    e = estimate(rounds)
    assert e["ratio"]["web"] == pytest.approx(1.525 / 3.35)
    assert e["estimate"]["web"] == pytest.approx(REFERENCE["web"] * 1.525 / 3.35)  # 1.78 ms
    assert e["estimate"]["postgres"] == pytest.approx(REFERENCE["postgres"] * 1.235 / 1.4)
    assert e["estimate"]["back to back"] == pytest.approx(REFERENCE["back to back"] * 1511 / 395.5)
    text = report(rounds, command="python -m devtools.reference_loadtest --rounds 2", machine="a VM")
    assert "**1.78 ms** (within the target of at most 2 ms)" in text
    assert "| 2 | reference (9029131) | 300 | 70 / 60 ms | 3.30 / 1.40 ms | 352 | 2500 |" in text
    slower = [{"reference": _tree(3.0, 1.4, 400), "today": _tree(1.6, 1.3, 1200)}]  # 3.9 x 0.53 = 2.08
    assert "(over the target of at most 2 ms)" in report(slower, command="c", machine="m")


def test_the_reference_tree_comes_from_the_repositorys_history():
    head = subprocess.run(
        ["git", "-C", str(reference_loadtest.ROOT), "rev-parse", "HEAD"], capture_output=True, text=True
    )
    if head.returncode != 0:
        pytest.skip("not a git checkout")
    with reference_loadtest.reference_tree(head.stdout.strip()) as tree:
        assert (tree / "manage.py").is_file() and (tree / "platform" / "devtools").is_dir()
        assert (tree / ".venv" / "bin" / "python").exists()  # this tree's environment
    assert not tree.exists()
    with pytest.raises(SystemExit, match="not in this clone"), reference_loadtest.reference_tree("0" * 40):
        pass


def test_a_back_to_back_run_without_latencies_still_reads():
    text = REFERENCE_OUTPUT.replace("418 / 551 / 599 ms", "none sent in the window")
    parsed = parse_report(text)
    assert parsed["back to back"]["p99_ms"] is None and parsed["paced"]["p99_ms"] == (85, 110)
    with pytest.raises(ReportError, match="paced latencies"):
        parse_report(REFERENCE_OUTPUT.replace("12 / 66 / 85 ms", "none sent in the window"))


def test_each_tree_gets_its_own_database_never_the_load_tests():
    url, maintenance, name = reference_loadtest._database_url(
        "postgres://postgres@127.0.0.1:5432/perceptlab_load", "reference"
    )
    assert name == "perceptlab_load_reference" and url.endswith("/perceptlab_load_reference")
    assert maintenance.endswith("/postgres")
    with pytest.raises(SystemExit, match="63 bytes"):  # PostgreSQL would cut it back to the base name
        reference_loadtest._database_url("postgres://h/" + "x" * 60, "reference")
