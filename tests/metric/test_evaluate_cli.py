import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from metric.data import JNDData, TwoAFCData, write_bapps_2afc, write_bapps_jnd
from metric.evaluate import evaluate_2afc, evaluate_jnd, lpips_2afc_distances, resolve_metrics

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args):
    env = {**os.environ, "PERCEPTLAB_OFFLINE": "1", "PYTHONPATH": f"{ROOT}:{ROOT / 'platform'}"}
    return subprocess.run(
        [sys.executable, "-m", "metric", *args], capture_output=True, text=True, env=env, timeout=300
    )


@pytest.fixture(scope="module")
def small(synthetic_data):
    data = synthetic_data.subset(np.arange(60))
    data.categories = ["traditional"] * 30 + ["cnn"] * 30
    return data


def test_evaluate_2afc_reports_per_category_with_cis_and_ceilings(small):
    metrics = resolve_metrics(["lpips-alex", "l2_lab", "ms_ssim"], backbone_weights="random", seed=7)
    report = evaluate_2afc(small, metrics, n_boot=200)
    assert set(report["categories"]) == {"traditional", "cnn"}
    cat = report["categories"]["cnn"]
    assert cat["oracle"] >= cat["human_plugin"] >= cat["human_loo"]
    for name in ("lpips-alex", "l2_lab", "ms_ssim"):
        entry = report["metrics"][name]["categories"]["cnn"]
        assert entry["ci_low"] <= entry["score"] <= entry["ci_high"]
    lp = report["metrics"]["lpips-alex"]
    assert lp["all"] == pytest.approx(np.mean([v["score"] for v in lp["categories"].values()]))
    assert lp["describe"]["backbone_weights"] == "random:7" and lp["describe"]["version"] == "0.1"


def test_bf16_decisions_agree_with_fp32(synthetic_data):
    import metric

    model = metric.LPIPS(net="alex", backbone_weights="random", seed=7)
    d0, d1 = lpips_2afc_distances(model, synthetic_data)
    b0, b1 = lpips_2afc_distances(model, synthetic_data, precision="bf16")
    assert np.mean(np.sign(d0 - d1) == np.sign(b0 - b1)) >= 0.999
    assert np.allclose(d0, b0, rtol=0.1, atol=1e-3)


def test_evaluate_jnd_map(real_patches):
    data = JNDData(
        real_patches[:6],
        real_patches[[0, 1, 2, 9, 10, 11]],
        np.array([1.0, 1.0, 1.0, 0.0, 0.0, 1 / 3]),
        ["cnn"] * 6,
    )
    report = evaluate_jnd(data, resolve_metrics(["l2_lab"]))
    # identical pairs have distance 0 and are ranked first: perfect precision on them
    assert report["metrics"]["l2_lab"]["categories"]["cnn"]["map"] > 0.9


def test_cli_distance_evaluate_and_train(tmp_path, small, real_patches):
    from PIL import Image

    Image.fromarray(real_patches[0]).save(tmp_path / "a.png")
    Image.fromarray(real_patches[1]).save(tmp_path / "b.png")
    r = _cli("distance", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "--backbone-weights", "random")
    assert r.returncode == 2 and "official lpips heads on a random:0 trunk" in r.stderr
    r = _cli(
        "distance",
        str(tmp_path / "a.png"),
        str(tmp_path / "b.png"),
        "--backbone-weights",
        "random",
        "--heads",
        "none",
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["distance"] > 0 and out["net"] == "alex" and out["head_weights"] == "none"

    write_bapps_2afc(tmp_path / "2afc" / "val", small)
    roots = [str(tmp_path / "2afc" / "val" / c) for c in ("cnn", "traditional")]
    r = _cli(
        "evaluate",
        "--bapps",
        *roots,
        "--metrics",
        "deep-alex,l2_rgb",
        "--backbone-weights",
        "random",
        "--n-boot",
        "100",
        "--out",
        str(tmp_path / "report.json"),
    )
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert set(report["metrics"]["deep-alex"]["categories"]) == {"cnn", "traditional"}
    assert "2afc" in r.stderr  # progress bar

    r = _cli(
        "train",
        "--bapps",
        *roots,
        "--backbone-weights",
        "random",
        "--epochs",
        "1",
        "--epochs-decay",
        "1",
        "--out",
        str(tmp_path / "run"),
    )
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "run" / "heads.pth").is_file()
    r = _cli(
        "evaluate",
        "--bapps",
        *roots,
        "--metrics",
        "lpips-alex",
        "--backbone-weights",
        "random",
        "--heads",
        f"lpips-alex={tmp_path / 'run' / 'heads.pth'}",
        "--n-boot",
        "50",
    )
    assert r.returncode == 0 and "file:" in r.stdout

    jnd = JNDData(real_patches[:4], real_patches[4:8], np.array([0, 1 / 3, 2 / 3, 1.0]), ["cnn"] * 4)
    write_bapps_jnd(tmp_path / "jnd" / "val", jnd)
    r = _cli("evaluate", "--jnd", "--bapps", str(tmp_path / "jnd" / "val" / "cnn"), "--metrics", "l2_lab")
    assert r.returncode == 0, r.stderr
    assert "map" in json.loads(r.stdout)["metrics"]["l2_lab"]["categories"]["cnn"]


def test_cli_errors_are_clear(tmp_path):
    r = _cli("evaluate", "--bapps", str(tmp_path / "missing"), "--metrics", "l2_lab")
    assert r.returncode == 2 and "BAPPS folder missing" in r.stderr
    r = _cli("distance", "x.png", "y.png", "--backbone-weights", "imagenet")
    assert r.returncode == 2 and "not available" in r.stderr and "random" in r.stderr
    r = _cli("evaluate", "--bapps", str(tmp_path), "--metrics", "nope")
    assert r.returncode == 2 and "unknown metric" in r.stderr


def test_two_afc_data_subset_keeps_alignment(small):
    sub = small.subset([5, 2])
    assert np.array_equal(sub.ref[0], small.ref[5]) and sub.p[1] == small.p[2]
    assert isinstance(sub, TwoAFCData)
