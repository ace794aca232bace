"""The adaptive-sampling benchmark runs end to end at a tiny size: every design's samplers collect, train
and score, the section reports each crowd with its verdicts and seeds, and the plot is an SVG with a panel
pair per design and crowd (the real sizes run in `make bench-adaptive`)."""

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from devtools.bench_adaptive import DESIGNS, crowd_votes, run
from devtools.reports import section_markers

pytestmark = pytest.mark.slow


def test_the_crowd_votes_follow_the_observer():
    votes = crowd_votes(np.array([0.1, 0.9]), np.array([0.9, 0.1]), 40, seed=0)
    assert set(np.unique(votes)) <= {0, 1}
    assert votes[0].mean() < 0.2 and votes[1].mean() > 0.8  # lapses (5 %) aside, p0 then p1 is closer


def test_the_benchmark_runs_and_reports_every_sampler(tmp_path):
    out, plot = tmp_path / "benchmarks.md", tmp_path / "img" / "curves.svg"
    section = run(
        out=str(out),
        plot=str(plot),
        n_items=72,
        rounds=2,
        batch=10,
        seeds=(0, 1),
        steps=20,
        n_boot=20,
        crowds={"l2_lab": "l2_lab", "blur4": "l2_lab, blur x4"},
        jobs=1,
    )
    raw = json.loads((tmp_path / "benchmarks-adaptive.json").read_text())
    assert set(raw["designs"]) == set(DESIGNS)
    for design, entry in raw["designs"].items():
        assert entry["n_train"] + entry["n_val"] == 72
        for summary in entry["crowds"].values():
            assert summary["budgets"] == [20, 40]  # 10 items a round, 2 votes each
            assert set(summary["samplers"]) == set(DESIGNS[design]["samplers"])
            for s in summary["samplers"].values():
                assert all(lo <= m <= hi for m, lo, hi in s["val_2afc"])
                assert len(s["budget_to_resolve"]) == 2 and len(s["pairs_resolved"]) == 2
    begin, end = section_markers("adaptive-sampling")
    text = out.read_text()
    assert begin in text and end in text and section.strip() in text
    assert "info_gain" in section and "Seeds 0, 1" in section and "img/curves.svg" in section
    svg = ET.fromstring(plot.read_text())
    panels = [el for el in svg if el.tag.endswith("svg")]
    assert len(panels) == 2 * 2 * 2  # (2AFC, ranking) x 2 designs x 2 crowds
