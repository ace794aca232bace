"""The CNN-autoencoder family: space, trainer (snapshots, exact resume), pool, registered distortion."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import distortions
from distortions.cnn.distortion import add_pool_dir, pool_index
from distortions.cnn.model import Generator
from distortions.cnn.space import ArchSpec, sample_specs
from distortions.cnn.trainer import Budget, corpus_patches, train_autoencoder, train_pool
from distortions.errors import DistortionError

ROOT = Path(__file__).resolve().parents[2]
TINY = Budget(steps=24, batch_size=8, snapshots=[2, 8, 24], checkpoint_every=4)


@pytest.fixture(scope="session")
def trained_pool(tmp_path_factory):
    out = tmp_path_factory.mktemp("cnn_pool")
    manifest = train_pool(out, n_models=3, seed=5, budget=TINY, corpus=48, jobs=2, progress=False)
    return out, manifest


@pytest.fixture
def pool(trained_pool):
    """The session's tiny pool, and only it, registered for this test."""
    from distortions.cnn import distortion

    distortion._EXTRA_DIRS[:] = []
    add_pool_dir(trained_pool[0])
    return trained_pool


def test_every_sampled_spec_builds_and_runs_on_64x64():
    specs = sample_specs(120, seed=1)
    assert len({s.to_json() for s in specs}) == 120
    seen = {
        k: {getattr(s, k) for s in specs}
        for k in ("upsample", "norm", "corruption", "first_stride", "n_layers")
    }
    assert seen["upsample"] == {"transpose", "bilinear", "nearest", "pixelshuffle"}
    assert seen["norm"] == {"batch", "instance", "none"} and seen["first_stride"] == {1, 2}
    assert len(seen["corruption"]) == 5 and seen["n_layers"] == {2, 3, 4}
    assert (
        any(s.force_top_skip for s in specs)
        and any(s.skip_layers for s in specs)
        and any(s.dropout_layers for s in specs)
    )
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        for spec in specs:
            y = Generator(spec).eval()(x)
            assert y.shape == (2, 3, 64, 64) and float(y.abs().max()) <= 1.0
    assert ArchSpec.from_dict(json.loads(specs[0].to_json())) == specs[0]


def test_spec_validation_is_clear():
    with pytest.raises(DistortionError, match="upsample"):
        ArchSpec(upsample="magic").validate()
    with pytest.raises(DistortionError, match="unknown autoencoder spec keys"):
        ArchSpec.from_dict({"layers": 3})


def test_pool_manifest_and_snapshots(pool):
    out, manifest = pool
    assert len(manifest["models"]) == 3
    for model in manifest["models"]:
        assert [s["step"] for s in model["snapshots"]] == [2, 8, 24]
        for snap in model["snapshots"]:
            assert (out / model["dir"] / snap["file"]).is_file()
    assert len(pool_index()["by_sha"]) >= 9


def test_cnn_distortion_is_deterministic_and_records_round_trip(pool, patch):
    d = distortions.create("cnn_autoencoder")
    params = d.sample(np.random.default_rng(1))
    a, b = d.apply(patch, params), d.apply(patch.copy(), json.loads(json.dumps(params)))
    assert a.tobytes() == b.tobytes() and a.shape == patch.shape and a.dtype == np.uint8
    out, record = distortions.distort(patch, [{"name": "cnn_autoencoder", "params": params}])
    record = json.loads(json.dumps(record))
    prov = record["ops"][0]["provenance"]
    assert (
        prov["step"] == params["step"]
        and "upsample" in prov["arch"]
        and prov["training_seed"] == prov["arch"]["seed"]
    )
    assert distortions.reapply(record, patch).tobytes() == out.tobytes()


def test_distance_grows_as_the_snapshot_gets_earlier(pool, patches):
    d = distortions.create("cnn_autoencoder")
    models = pool_index()["models"]
    errors = {}
    for k, step in enumerate((2, 8, 24)):
        per = []
        for m, model in enumerate(models):
            snap = next(s for s in model["snapshots"] if s["step"] == step)
            for j, p in enumerate(patches):
                params = {
                    "severity": 1.0 - k / 2,
                    "model": m,
                    "step": step,
                    "checkpoint_sha256": snap["sha256"],
                    "seed": j,
                }
                per.append(np.abs(d.apply(p, params).astype(float) - p).mean())
        errors[step] = float(np.mean(per))
    assert errors[2] > errors[8] > errors[24], errors


def test_severity_selects_the_snapshot(pool):
    d = distortions.create("cnn_autoencoder")
    assert d.params_at(1.0, np.random.default_rng(0))["step"] == 2
    assert d.params_at(0.0, np.random.default_rng(0))["step"] == 24


def test_bad_params_and_missing_checkpoints_are_clear(pool, patch):
    d = distortions.create("cnn_autoencoder")
    params = d.sample(np.random.default_rng(2))
    with pytest.raises(DistortionError, match="matching"):
        d.apply(patch, {**params, "checkpoint_sha256": "xyz"})
    with pytest.raises(DistortionError, match="not in any pool"):
        d.apply(patch, {**params, "checkpoint_sha256": "0" * 64})


def test_studies_mix_cnn_with_traditional_families(pool, tmp_path):
    cfg = {
        "kind": "2afc",
        "seed": 4,
        "n_items": 40,
        "families": {"blur": 1, "cnn": 1},
        "sentinels": {"n": 0},
        "practice": {"n": 0},
    }
    distortions.build_study(cfg, tmp_path, jobs=1, progress=False)
    items = distortions.read_manifest(tmp_path / "manifest.jsonl")
    cats = {i["category"] for i in items}
    assert cats == {"traditional", "cnn", "mix"}
    cnn_item = next(i for i in items if i["category"] == "cnn")
    assert cnn_item["records"]["p0"]["ops"][0]["name"] == "cnn_autoencoder"
    from distortions.imageio import load_rgb

    ref = load_rgb(tmp_path / "images" / cnn_item["files"]["ref"])
    assert (
        distortions.reapply(cnn_item["records"]["p1"], ref).tobytes()
        == load_rgb(tmp_path / "images" / cnn_item["files"]["p1"]).tobytes()
    )


def test_cnn_never_composes():
    assert not distortions.chain_allowed(["cnn_autoencoder", "jpeg"])
    assert distortions.chain_allowed(["cnn_autoencoder"])


RESUME_SCRIPT = """
import sys, torch
from distortions.cnn.space import ArchSpec
from distortions.cnn.trainer import Budget, train_autoencoder
spec = ArchSpec(n_layers=2, skip_layers=[1], corruption="white_noise", corruption_strength=0.5,
                feature_weight=0.2, adversarial_weight=0.05, disc_layers=2, first_channels=8, max_channels=16,
                dropout_layers=[0], seed=3)
torch.set_num_threads(1)
patches = torch.load(sys.argv[2], weights_only=True)
def slow(step, total):
    import time; time.sleep(0.05)
train_autoencoder(spec, patches, sys.argv[1], Budget(steps=30, batch_size=4, snapshots=[10, 30], \
checkpoint_every=5),
                  on_step=slow)
"""


def _run(run_dir, corpus, wait_for_step=None):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", RESUME_SCRIPT, str(run_dir), str(corpus)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    if wait_for_step is None:
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out.decode()[-3000:]
        return
    deadline = time.time() + 180
    latest = Path(run_dir) / "latest.pt"
    while time.time() < deadline:
        if latest.exists() and torch.load(latest, weights_only=False)["step"] >= wait_for_step:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


@pytest.mark.slow
def test_killed_training_resumes_from_its_last_checkpoint_to_identical_weights(tmp_path):
    corpus = tmp_path / "corpus.pt"
    torch.save(corpus_patches(24, seed=1), corpus)
    _run(tmp_path / "uninterrupted", corpus)
    _run(tmp_path / "killed", corpus, wait_for_step=15)
    state = torch.load(tmp_path / "killed" / "latest.pt", weights_only=False)
    assert 15 <= state["step"] < 30 and not (tmp_path / "killed" / "done.json").exists()
    assert [s["step"] for s in state["snapshots"]] == [10]
    _run(tmp_path / "killed", corpus)
    done_a = json.loads((tmp_path / "uninterrupted" / "done.json").read_text())["snapshots"]
    done_b = json.loads((tmp_path / "killed" / "done.json").read_text())["snapshots"]
    assert done_a == done_b  # same files, same sha256: the resumed run is bit-identical


def test_a_finished_run_is_reused(tmp_path):
    spec = ArchSpec(n_layers=2, first_channels=8, max_channels=8, seed=1)
    budget = Budget(steps=3, batch_size=2, snapshots=[1, 3], checkpoint_every=1)
    patches = corpus_patches(8, seed=0)
    first = train_autoencoder(spec, patches, tmp_path, budget)
    mtime = (tmp_path / "snapshot_000003.pt").stat().st_mtime_ns
    assert train_autoencoder(spec, patches, tmp_path, budget) == first
    assert (tmp_path / "snapshot_000003.pt").stat().st_mtime_ns == mtime


def test_cli_trains_a_pool(tmp_path):
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "distortions",
            "train-cnn-pool",
            str(tmp_path),
            "--models",
            "2",
            "--steps",
            "4",
            "--batch-size",
            "2",
            "--corpus",
            "8",
            "--jobs",
            "1",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["models"] == 2 and "train CNN pool" in r.stderr
    pool = json.loads((tmp_path / "pool.json").read_text())
    assert [s["step"] for s in pool["models"][0]["snapshots"]] == [1, 2, 4]


def test_parallel_builds_with_torch_loaded_match_serial_builds(pool, tmp_path):
    """With torch loaded the builder spawns its workers (forking after OpenMP threads start can hang);
    they get the CNN pool directories explicitly and produce the same bytes."""
    assert "torch" in sys.modules
    cfg = {
        "kind": "jnd",
        "seed": 6,
        "n_items": 16,
        "families": {"noise": 1, "cnn": 1},
        "sentinels": {"n": 2},
        "practice": {"n": 0},
    }
    a = distortions.build_study(cfg, tmp_path / "a", jobs=1, progress=False)
    b = distortions.build_study(cfg, tmp_path / "b", jobs=2, progress=False)
    assert a["manifest_sha256"] == b["manifest_sha256"]
    assert "cnn" in {i["category"] for i in distortions.read_manifest(tmp_path / "b" / "manifest.jsonl")}
