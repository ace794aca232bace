"""devtools.bench_scale.report renders every figure it is given (a long benchmark must not end in a
KeyError), marks each target met or not from the numbers, and says what the first page view cost."""

import pytest

from devtools.bench_scale import report

pytestmark = pytest.mark.django_db


def _pages(scale: float) -> dict:
    names = (
        "study page",
        "workers page 1",
        "API completions page 1",
        "completions CSV (every HIT, streamed)",
    )
    return {
        **{n: {"s": 0.1 * scale, "first_s": 0.3 * scale, "queries": 9} for n in names},
        "peak_rss_mb": 120.0 * scale,
    }


def test_it_reports_each_figure_against_its_target(make_study):
    results = {
        "small": {
            "pages": _pages(1),
            "export": {"s": 4.0, "bytes": 5e7, "peak_rss_mb": 120.0},
            "retrain": {"cold_s": 6.0, "warm_s": 3.0, "peak_rss_mb": 400.0},
        },
        "scale": {
            "pages": _pages(12),  # 1.2 s median: over the 1 s target
            "export": {"s": 400.0, "bytes": 4e9, "peak_rss_mb": 1500.0},  # over 1 GB
            "retrain": {"cold_s": 600.0, "warm_s": 90.0, "peak_rss_mb": 2000.0},
        },
    }
    studies = {"small": make_study(n_test=3), "BAPPS scale": make_study(n_test=5)}
    text = report(studies, results, params={"distinct": 2000}, seconds=600)
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")}
    assert "NOT met" in rows["study page: server time (queries)"]
    assert "NOT met" in rows["API completions page 1: server time (queries)"]  # a page: under 1 s
    assert "met" not in rows["completions CSV (every HIT, streamed): server time (queries)"]  # no target
    assert "< 1 GB: NOT met" in rows["export: peak RSS"]
    assert "<= 120 s: met" in rows["N-th judgment -> updated dashboard (features cached)"]
    assert "first view in a fresh process took 3.6 s" in text


def test_the_cold_retrain_starts_without_the_feature_cache_of_an_earlier_run(make_study, monkeypatch):
    """`make bench-scale` reruns on the same study: its "first retrain" must compute every feature again,
    not read the parts an earlier run left (which made a 457 s cold retrain read as 43 s)."""
    from core import storage
    from dashboard import selectors as dashboard_selectors
    from devtools import bench_scale
    from training import services

    study = make_study(n_test=3)
    with storage.writing(f"features/{study.pk}/alex-abc-1.npy") as tmp:
        tmp.write_bytes(b"left by an earlier run")
    seen = []

    def retrain(*, study):
        seen.append(storage.listdir(f"features/{study.pk}"))
        return {"status": "done", "n_judgments": 0}

    monkeypatch.setattr(services, "study_retrain", retrain)
    monkeypatch.setattr(dashboard_selectors, "dashboard_for", lambda *, study: {})
    assert bench_scale._retrain(study)["n_judgments"] == 0
    assert seen == [[], []]  # gone before the cold retrain
