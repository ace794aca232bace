"""k-means trunks everywhere: the Python API (corpus as a tensor or uint8 arrays, auto), train_heads drawing
the corpus from its training data and shipping trunk.pth, and `python -m metric train/evaluate/distance`
with kmeans, including what bad inputs do (a clear error and exit 2, never a traceback)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import metric
from metric import cli
from metric.backbones import corpus_digest, kmeans_corpus
from metric.data import TwoAFCData, load_patch, read_bapps_2afc, to_tensor, write_bapps_2afc
from metric.errors import MetricError
from metric.train import TrainConfig, build_model, train_heads

ROOT = Path(__file__).resolve().parents[2]
FAST = ["--epochs", "1", "--epochs-decay", "0", "--kmeans-patches", "16"]


def _run(home: Path, *args):
    """`python -m metric ...` offline, its k-means cache under `home`."""
    env = {
        **os.environ,
        "PERCEPTLAB_OFFLINE": "1",
        "HOME": str(home),
        "PYTHONPATH": f"{ROOT}:{ROOT / 'platform'}",
    }
    return subprocess.run(
        [sys.executable, "-m", "metric", *args], capture_output=True, text=True, env=env, timeout=300
    )


def _triplets(real_patches: np.ndarray) -> TwoAFCData:
    ref, p0, p1 = real_patches[0::3], real_patches[1::3], real_patches[2::3]
    n = len(ref)
    return TwoAFCData(ref, p0, p1, np.linspace(0, 1, n), ["traditional"] * n)


@pytest.fixture(scope="module")
def bapps(real_patches, tmp_path_factory) -> Path:
    """A tiny BAPPS 2AFC category folder (8 triplets of real photo patches)."""
    root = tmp_path_factory.mktemp("bapps")
    write_bapps_2afc(root / "2afc", _triplets(real_patches))
    return root / "2afc" / "traditional"


@pytest.fixture(scope="module")
def trained(bapps, tmp_path_factory):
    """`python -m metric train` with the default backbone (auto), offline: a k-means trunk."""
    home = tmp_path_factory.mktemp("home")
    out = home / "run"
    proc = _run(home, "train", "--bapps", str(bapps), *FAST, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return out, json.loads(proc.stdout.strip().splitlines()[-1]), proc


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # the default k-means cache lives under ~/.cache
    return tmp_path


# --- Python API ----------------------------------------------------------------------------------------
def test_lpips_takes_uint8_arrays_or_a_tensor_as_corpus_and_records_it(real_patches, tmp_path):
    arrays = [real_patches[:12], real_patches[12:]]
    model = metric.LPIPS(
        backbone_weights="kmeans", kmeans_corpus=arrays, kmeans_patches=10, seed=3, kmeans_cache_dir=tmp_path
    )
    drawn = kmeans_corpus(*arrays, n=10, seed=3)
    info = model.describe()["kmeans_corpus"]
    assert info == {"seed": 3, "patches": 10, "size": [64, 64], "digest": corpus_digest(drawn)}
    assert model.describe()["backbone_weights"] == f"kmeans:3:{info['digest']}"
    same = metric.LPIPS(backbone_weights="kmeans", kmeans_corpus=drawn, seed=3, kmeans_cache_dir=tmp_path)
    x0, x1 = to_tensor(real_patches[:2]), to_tensor(real_patches[2:4])
    assert torch.equal(model(x0, x1), same(x0, x1))
    other = metric.LPIPS(
        backbone_weights="kmeans", kmeans_corpus=arrays, kmeans_patches=10, seed=4, kmeans_cache_dir=tmp_path
    )
    assert other.describe()["kmeans_corpus"]["digest"] != info["digest"]


def test_auto_offline_resolves_to_kmeans_and_says_why(real_patches, tmp_path):
    model = metric.LPIPS(backbone_weights="auto", kmeans_corpus=real_patches, kmeans_cache_dir=tmp_path)
    desc = model.describe()
    assert desc["backbone_weights"].startswith("kmeans:0:")
    assert "PERCEPTLAB_OFFLINE" in desc["backbone_reason"] and "k-means" in desc["backbone_reason"]
    with pytest.raises(MetricError, match="kmeans_corpus"):
        metric.LPIPS(backbone_weights="auto")  # auto chose k-means, and there is nothing to cluster


@pytest.mark.parametrize(
    ("corpus", "message"),
    [
        (torch.zeros(4, 3, 8, 8), "too small"),
        (torch.full((2, 3, 64, 64), float("nan")), "NaN"),
        (["a.png", "b.png"], "uint8"),
        (np.zeros((3, 64, 64, 3), np.float32), "uint8"),
        (np.zeros((0, 64, 64, 3), np.uint8), "at least one image"),
    ],
)
def test_bad_corpora_raise_a_clear_error(corpus, message, tmp_path):
    with pytest.raises(MetricError, match=message):
        metric.LPIPS(backbone_weights="kmeans", kmeans_corpus=corpus, kmeans_cache_dir=tmp_path)


def test_train_heads_draws_the_corpus_from_its_data_and_ships_the_trunk(real_patches, home):
    data = _triplets(real_patches)
    cfg = TrainConfig(backbone_weights="auto", epochs=1, epochs_decay=0, kmeans_patches=20, seed=2)
    result = train_heads(data, cfg)
    info = result.model.describe()["kmeans_corpus"]
    expected = kmeans_corpus(data.ref, data.p0, data.p1, n=20, seed=2)
    assert info["digest"] == corpus_digest(expected) and info["from"] == "the training data (ref, p0, p1)"
    assert "PERCEPTLAB_OFFLINE" in result.model.describe()["backbone_reason"]
    out = home / "run"
    result.save(out)
    meta = json.loads((out / "config.json").read_text())
    assert meta["trunk"] == "trunk.pth" and meta["config"]["kmeans_patches"] == 20
    assert meta["model"]["kmeans_corpus"]["digest"] == info["digest"]
    again = metric.LPIPS(backbone_weights=out / "trunk.pth", head_weights=out / "heads.pth")
    assert again.describe()["backbone_weights"] == "file:trunk.pth"  # the corpus record is in config.json
    x0, x1 = to_tensor(data.ref), to_tensor(data.p0)
    assert torch.allclose(again(x0, x1), result.model.eval()(x0, x1), atol=1e-6)


def test_build_model_keeps_its_platform_signature(real_patches, tmp_path):
    corpus = kmeans_corpus(real_patches, n=12)
    cfg = TrainConfig(backbone_weights="kmeans")
    model = build_model(cfg, kmeans_corpus=corpus, kmeans_cache_dir=tmp_path)
    assert model.describe()["kmeans_corpus"]["digest"] == corpus_digest(corpus)
    assert build_model(TrainConfig(backbone_weights="random")).describe()["backbone_weights"] == "random:0"
    with pytest.raises(MetricError, match="kmeans_patches"):
        TrainConfig(kmeans_patches=0).validate()


# --- CLI ------------------------------------------------------------------------------------------------
def test_cli_train_auto_offline_uses_kmeans_writes_the_trunk_and_records_the_corpus(trained, bapps):
    out, summary, proc = trained
    assert {p.name for p in out.iterdir()} >= {"heads.pth", "rank.pth", "trunk.pth", "config.json"}
    assert summary["trunk"] == str(out / "trunk.pth")
    assert summary["backbone"]["weights"] == "kmeans"
    assert "PERCEPTLAB_OFFLINE" in summary["backbone"]["reason"]
    assert summary["backbone"]["reason"] in proc.stderr  # the log says which trunk ran and why
    corpus = summary["kmeans_corpus"]
    assert corpus["seed"] == 0 and corpus["patches"] == 16 and corpus["from"] == f"--bapps {bapps}"
    meta = json.loads((out / "config.json").read_text())
    assert meta["config"]["backbone_weights"] == "auto"
    assert meta["model"]["kmeans_corpus"] == corpus
    assert meta["model"]["backbone_weights"] == f"kmeans:0:{corpus['digest']}"
    data = read_bapps_2afc(bapps)
    drawn = kmeans_corpus(data.ref, data.p0, data.p1, n=16, seed=0)
    assert corpus["digest"] == corpus_digest(drawn)


def test_cli_train_same_seed_same_trunk_other_seed_another(trained, bapps, tmp_path):
    out, summary, _ = trained

    def train(seed: int) -> tuple[dict, dict]:
        dest = tmp_path / f"seed{seed}"
        proc = _run(
            tmp_path,
            "train",
            "--bapps",
            str(bapps),
            "--backbone-weights",
            "kmeans",
            *FAST,
            "--seed",
            str(seed),
            "--out",
            str(dest),
        )
        assert proc.returncode == 0, proc.stderr
        state = torch.load(dest / "trunk.pth", weights_only=True)
        return json.loads(proc.stdout.strip().splitlines()[-1]), state

    first = torch.load(out / "trunk.pth", weights_only=True)
    same, same_state = train(0)
    other, other_state = train(1)
    assert same["kmeans_corpus"]["digest"] == summary["kmeans_corpus"]["digest"]
    assert all(torch.equal(first[k], same_state[k]) for k in first)
    assert other["kmeans_corpus"]["digest"] != summary["kmeans_corpus"]["digest"]
    assert not torch.equal(first["0.weight"], other_state["0.weight"])


def test_cli_distance_with_the_written_trunk_reproduces_the_trained_model(trained, bapps):
    out, summary, _ = trained
    a, b = bapps / "ref" / "000000.png", bapps / "p1" / "000003.png"
    proc = _run(
        out.parent,
        "distance",
        "--heads",
        str(out / "heads.pth"),
        "--backbone-weights",
        str(out / "trunk.pth"),
        str(a),
        str(b),
    )
    assert proc.returncode == 0, proc.stderr
    reported = json.loads(proc.stdout)
    model = metric.LPIPS(backbone_weights=out / "trunk.pth", head_weights=out / "heads.pth")
    with torch.no_grad():
        expected = float(model(to_tensor(load_patch(a, None)[None]), to_tensor(load_patch(b, None)[None])))
    assert reported["distance"] == pytest.approx(expected, rel=1e-6, abs=1e-9)
    assert reported["backbone_weights"] == "file:trunk.pth"
    # the same folders, seed and --kmeans-patches rebuild the same trunk, so the same distance
    again = _run(
        out.parent,
        "distance",
        "--heads",
        str(out / "heads.pth"),
        "--backbone-weights",
        "kmeans",
        "--kmeans-corpus",
        str(bapps),
        "--kmeans-patches",
        "16",
        str(a),
        str(b),
    )
    assert again.returncode == 0, again.stderr
    rebuilt = json.loads(again.stdout)
    assert rebuilt["kmeans_corpus"]["digest"] == summary["kmeans_corpus"]["digest"]
    assert rebuilt["distance"] == pytest.approx(reported["distance"], rel=1e-6, abs=1e-9)


def test_cli_evaluate_with_kmeans_draws_the_corpus_from_the_data(trained, bapps, home, capsys):
    out, summary, _ = trained
    rc = cli.main(
        [
            "evaluate",
            "--bapps",
            str(bapps),
            "--backbone-weights",
            "kmeans",
            "--kmeans-patches",
            "16",
            "--metrics",
            "lpips-alex,deep-alex,l2_lab",
            "--heads",
            f"lpips-alex={out / 'heads.pth'}",
            "--n-boot",
            "20",
        ]
    )
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    lp = report["metrics"]["lpips-alex"]
    assert lp["describe"]["kmeans_corpus"]["from"] == f"--bapps {bapps}"
    # the evaluated data is the training data here, so the corpus (and the trunk) are the trained ones
    assert lp["describe"]["kmeans_corpus"]["digest"] == summary["kmeans_corpus"]["digest"]
    assert report["metrics"]["deep-alex"]["describe"]["metric"] == "deep-unweighted"
    assert 0.0 <= lp["all"] <= 1.0


def test_cli_evaluate_auto_and_a_corpus_folder(bapps, home, capsys):
    rc = cli.main(
        [
            "evaluate",
            "--bapps",
            str(bapps),
            "--backbone-weights",
            "auto",
            "--kmeans-corpus",
            str(bapps),
            "--metrics",
            "deep-alex",
            "--n-boot",
            "20",
        ]
    )
    assert rc == 0
    desc = json.loads(capsys.readouterr().out)["metrics"]["deep-alex"]["describe"]
    assert desc["kmeans_corpus"]["from"] == f"--kmeans-corpus {bapps}"
    assert "PERCEPTLAB_OFFLINE" in desc["backbone_reason"]


def test_cli_distance_kmeans_without_corpus_says_what_to_pass(bapps, home, capsys):
    a = str(bapps / "ref" / "000000.png")
    assert cli.main(["distance", "--backbone-weights", "kmeans", a, a]) == 2
    err = capsys.readouterr().err
    assert "trunk.pth" in err and "--kmeans-corpus" in err and "Traceback" not in err


@pytest.fixture
def hostile(tmp_path, bapps):
    """Bad inputs: an empty folder, a folder of non-images, a BAPPS folder with a fake PNG, tiny images,
    a garbage trunk file."""
    empty = tmp_path / "empty"
    empty.mkdir()
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("not an image")
    (junk / "photo.png").write_bytes(b"<html>not a png</html>")
    fake = tmp_path / "fake" / "traditional"
    for sub in ("ref", "p0", "p1", "judge"):
        (fake / sub).mkdir(parents=True)
        for f in (bapps / sub).iterdir():
            (fake / sub / f.name).write_bytes(f.read_bytes())
    (fake / "p0" / "000002.png").write_bytes(b"GIF89a not really")
    tiny = tmp_path / "tiny.png"
    from PIL import Image

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tiny)
    garbage = tmp_path / "trunk.pth"
    garbage.write_bytes(b"\x00" * 64)
    return {"empty": empty, "junk": junk, "fake": fake, "tiny": tiny, "garbage": garbage, "tmp": tmp_path}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["train", "--bapps", "{bapps}", "--kmeans-corpus", "{empty}", "--out", "{tmp}/o"],
            "holds no images",
        ),
        (
            ["train", "--bapps", "{bapps}", "--kmeans-corpus", "{junk}", "--out", "{tmp}/o"],
            "cannot read image",
        ),
        (
            ["train", "--bapps", "{bapps}", "--kmeans-corpus", "{tmp}/missing", "--out", "{tmp}/o"],
            "not found",
        ),
        (["train", "--bapps", "{bapps}", "--kmeans-patches", "0", "--out", "{tmp}/o"], "kmeans-patches"),
        (["train", "--bapps", "{fake}", "--out", "{tmp}/o"], "000002.png"),
        (
            [
                "evaluate",
                "--bapps",
                "{bapps}",
                "--backbone-weights",
                "kmeans",
                "--kmeans-corpus",
                "{junk}",
                "--metrics",
                "deep-alex",
            ],
            "cannot read image",
        ),
        (["distance", "--backbone-weights", "random", "--heads", "none", "{tiny}", "{tiny}"], "too small"),
        (["distance", "--backbone-weights", "{garbage}", "{tiny}", "{tiny}"], "not a readable PyTorch"),
        (
            ["distance", "{tiny}", "{tiny}", "--backbone-weights", "kmeans", "--kmeans-corpus", "{empty}"],
            "holds no images",
        ),
    ],
)
def test_cli_bad_inputs_exit_2_with_a_clear_message(args, message, hostile, bapps, home, capsys):
    paths = {**{k: str(v) for k, v in hostile.items()}, "bapps": str(bapps)}
    assert cli.main([a.format(**paths) for a in args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_cli_trunk_of_another_net_is_refused(trained, bapps, home, capsys):
    out, _, _ = trained
    a = str(bapps / "ref" / "000000.png")
    assert cli.main(["distance", "--net", "squeeze", "--backbone-weights", str(out / "trunk.pth"), a, a]) == 2
    assert "squeezenet1_1" in capsys.readouterr().err


def test_the_cnn_feature_network_takes_a_kmeans_trunk_on_photo_patches(home, monkeypatch):
    from metric.features import cnn_feature_distance, photo_patches

    patches = photo_patches(8, seed=1)
    assert patches.shape == (8, 64, 64, 3) and patches.dtype == np.uint8
    assert np.array_equal(patches, photo_patches(8, seed=1)) and not np.array_equal(patches, photo_patches(8))
    monkeypatch.setenv("PERCEPTLAB_CNN_FEATURE_BACKBONE", "auto")  # offline: k-means
    net = cnn_feature_distance("cpu")
    desc = net.describe()
    assert desc["metric"] == "deep-unweighted" and desc["backbone_weights"].startswith("kmeans:0:")
    assert desc["kmeans_corpus"]["patches"] == 512 and "scikit-image" in desc["kmeans_corpus"]["from"]
    assert "PERCEPTLAB_OFFLINE" in desc["backbone_reason"]


def test_cli_evaluate_jnd_with_kmeans_draws_from_both_patches(real_patches, tmp_path, home, capsys):
    from metric.data import JNDData, write_bapps_jnd

    jnd = JNDData(real_patches[:6], real_patches[6:12], np.array([0, 1 / 3, 2 / 3, 1.0, 0, 1]), ["cnn"] * 6)
    write_bapps_jnd(tmp_path / "jnd", jnd)
    folder = str(tmp_path / "jnd" / "cnn")
    rc = cli.main(
        ["evaluate", "--jnd", "--bapps", folder, "--backbone-weights", "kmeans", "--metrics", "deep-alex"]
    )
    assert rc == 0
    assert "map" in json.loads(capsys.readouterr().out)["metrics"]["deep-alex"]["categories"]["cnn"]
