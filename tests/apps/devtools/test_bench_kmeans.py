"""The k-means science check runs end to end at a tiny size: both crowds label the triplets, both trunks
get trained lin heads and unweighted controls, and the section names the paper's figures, the observer
and every score with its CI (the real sizes run in `make bench`)."""

import json

import numpy as np
import pytest

from devtools.bench_kmeans import OBSERVER, crowd_labels, run
from devtools.reports import section_markers

pytestmark = pytest.mark.slow


def test_the_crowd_votes_follow_the_observer_and_count_votes():
    d0 = np.array([0.1, 0.9, 0.5])
    d1 = np.array([0.9, 0.1, 0.5])
    p = crowd_labels(d0, d1, np.array([5, 5, 2]), seed=0)
    assert p[0] <= 0.2 and p[1] >= 0.8  # lapses (5 %) aside, p0 wins the first and p1 the second
    assert set(np.round(p[:2] * 5, 6)) <= set(range(6)) and p[2] in (0.0, 0.5, 1.0)


def test_the_science_check_runs_and_reports_both_trunks(tmp_path):
    out = tmp_path / "benchmarks.md"
    section = run(out=str(out), n_train=45, n_val=15, trunk_seeds=(0,), n_boot=20, kmeans_patches=32)
    raw = json.loads((tmp_path / "benchmarks-kmeans.json").read_text())
    assert not OBSERVER.startswith("lpips:alex")  # the observer is neither AlexNet trunk
    assert set(raw["rows"]) == {"main", "ms_ssim"}
    for crowd, rows in raw["rows"].items():
        assert set(rows) == {"kmeans:0", "random:0"}
        km = rows["kmeans:0"]["describe"]
        assert km["backbone_weights"] == f"kmeans:0:{km['kmeans_corpus']['digest']}"
        assert km["kmeans_corpus"]["patches"] == 32 and "train" in km["kmeans_corpus"]["from"]
        assert rows["random:0"]["describe"]["backbone_weights"] == "random:0"
        for row in rows.values():
            for heads in ("lin", "unweighted"):
                entry = row[heads]
                assert entry["n"] == 15 and entry["ci_low"] <= entry["score"] <= entry["ci_high"]
        paired = raw["mean_over_seeds"][crowd]["lin"]
        assert paired["diff"] == pytest.approx(paired["kmeans"] - paired["random"])
        assert set(raw["baselines"]) == {"l2_lab", "dssim_rgb"}
    text = out.read_text()
    begin, end = section_markers("kmeans-science")
    assert begin in text and end in text and section.strip() in text
    assert "66.6" in section and "64.3" in section and OBSERVER in section and "ms_ssim" in section
