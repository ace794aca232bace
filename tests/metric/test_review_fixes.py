"""What reviewers found in the metric library and its CLI, each pinned: official heads on a foreign trunk,
manifests without votes, the one trunk-file format, training's auto default, the CLI's options (no
evaluate --net, no train --jnd, train's default split, evaluate --model)."""

import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

import metric
from metric import cli
from metric.bundle import write_bundle
from metric.data import TwoAFCData, read_manifest, to_tensor, write_bapps_2afc
from metric.errors import MetricError
from metric.train import TrainConfig, train_heads


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """These tests resolve `auto` backbones: offline, stated here, so none of them tries torchvision's
    download (tests/conftest.py also refuses every connection off the loopback)."""
    monkeypatch.setenv("PERCEPTLAB_OFFLINE", "1")


@pytest.fixture
def bapps(tmp_path, real_patches):
    ref, p0, p1 = real_patches[0::3][:6], real_patches[1::3][:6], real_patches[2::3][:6]
    data = TwoAFCData(ref, p0, p1, np.array([0.0, 0.2, 0.4, 0.6, 0.8, 1.0]), ["cnn"] * 6)
    write_bapps_2afc(tmp_path / "2afc", data)
    return tmp_path / "2afc" / "cnn", data


# --- 1. official heads are for ImageNet trunks -----------------------------------------------------------
def test_official_heads_on_a_non_imagenet_trunk_warn_and_describe_says_so(real_patches, tmp_path):
    with pytest.warns(metric.OfficialHeadsWarning, match="kmeans:0:"):
        km = metric.LPIPS(backbone_weights="kmeans", kmeans_corpus=real_patches, kmeans_cache_dir=tmp_path)
    desc = km.describe()
    assert desc["head_weights"] == "official:v0.1 on a non-ImageNet trunk"
    assert "head_weights=PATH" in desc["warning"] and "not LPIPS" in desc["warning"]
    km.save_trunk(tmp_path / "trunk.pth")
    with pytest.warns(metric.OfficialHeadsWarning, match="file:trunk.pth"):
        metric.LPIPS(backbone_weights=tmp_path / "trunk.pth")
    with warnings.catch_warnings():
        warnings.simplefilter("error", metric.OfficialHeadsWarning)
        for heads in (None, "random"):
            assert "warning" not in metric.LPIPS(backbone_weights="random", head_weights=heads).describe()
        quiet = metric.LPIPS(backbone_weights="random", warn_official_heads=False)
    assert "warning" in quiet.describe()  # silenced, still said


@pytest.mark.parametrize("weights", ["kmeans", "auto", "random"])
def test_cli_evaluate_refuses_official_heads_on_a_non_imagenet_trunk(weights, bapps, capsys):
    root, _ = bapps
    argv = ["evaluate", "--bapps", str(root), "--backbone-weights", weights, "--metrics", "lpips-alex"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: lpips-alex would run the official lpips heads on a ")
    assert "--heads lpips-alex=PATH" in err and "--model BUNDLE" in err


def test_cli_distance_refuses_official_heads_on_a_non_imagenet_trunk_unless_heads_are_given(bapps, capsys):
    root, _ = bapps
    a = str(root / "ref" / "000000.png")
    assert cli.main(["distance", a, a, "--backbone-weights", "random"]) == 2
    assert "official lpips heads on a random:0 trunk" in capsys.readouterr().err
    with pytest.warns(metric.OfficialHeadsWarning):
        assert cli.main(["distance", a, a, "--backbone-weights", "random", "--heads", "official"]) == 0
    assert json.loads(capsys.readouterr().out)["head_weights"] == "official:v0.1 on a non-ImageNet trunk"


# --- 2. manifests without votes -----------------------------------------------------------------------------
def test_a_manifest_without_votes_is_a_clear_error(tmp_path, real_patches, capsys):
    for name, arr in zip(("r.png", "a.png", "b.png"), real_patches[:3], strict=True):
        Image.fromarray(arr).save(tmp_path / name)
    row = {"id": "i0", "kind": "2afc", "split": "train", "ref": "r.png", "p0": "a.png", "p1": "b.png"}
    (tmp_path / "manifest.jsonl").write_text(json.dumps(row) + "\n")
    with pytest.raises(MetricError, match="has no n_votes, p1_votes.*build-study"):
        read_manifest(tmp_path / "manifest.jsonl", kind="2afc")
    argv = ["train", "--manifest", str(tmp_path / "manifest.jsonl"), "--out", str(tmp_path / "o")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "n_votes" in err and "Traceback" not in err


# --- 6. train --manifest takes the train split by default -----------------------------------------------
def test_cli_train_on_a_manifest_uses_the_train_split_unless_told(tmp_path, real_patches, capsys):
    rows = []
    for i in range(4):
        names = [f"{i}-{k}.png" for k in ("r", "a", "b")]
        for name, arr in zip(names, real_patches[3 * i : 3 * i + 3], strict=True):
            Image.fromarray(arr).save(tmp_path / name)
        rows.append(
            {"id": f"t{i}", "kind": "2afc", "split": "train", "ref": names[0], "p0": names[1], "p1": names[2]}
            | {"n_votes": 5, "p1_votes": i}
        )
    # a val item whose images do not exist: reading it would fail
    rows.append(rows[0] | {"id": "v0", "split": "val", "ref": "missing.png"})
    (tmp_path / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    base = ["train", "--manifest", str(tmp_path / "items.jsonl"), "--backbone-weights", "random"]
    fast = ["--epochs", "1", "--epochs-decay", "0", "--batch-size", "2"]
    assert cli.main([*base, *fast, "--out", str(tmp_path / "o")]) == 0
    capsys.readouterr()
    assert cli.main([*base, *fast, "--split", "val", "--out", str(tmp_path / "o2")]) == 2
    assert "missing.png" in capsys.readouterr().err


# --- 5, 7. options that were accepted and ignored, or offered and refused ---------------------------------
@pytest.mark.parametrize(
    "argv",
    [
        ["evaluate", "--bapps", "x", "--net", "vgg"],
        ["train", "--bapps", "x", "--jnd", "--out", "o"],
    ],
)
def test_options_that_meant_nothing_are_gone(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2 and "unrecognized arguments" in capsys.readouterr().err


def test_help_says_where_the_net_and_the_split_come_from(capsys):
    with pytest.raises(SystemExit):
        cli.main(["evaluate", "--help"])
    assert "comes from the metric name" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default train)" in text and "--jnd" not in text


# --- 3. one trunk-file format ------------------------------------------------------------------------------
def test_train_writes_the_bundles_trunk_format_which_the_reference_snippet_loads(bapps, tmp_path, capsys):
    lpips = pytest.importorskip("lpips")
    root, data = bapps
    argv = ["train", "--bapps", str(root), "--backbone-weights", "random", "--seed", "4"]
    assert cli.main([*argv, "--epochs", "1", "--epochs-decay", "0", "--out", str(tmp_path / "run")]) == 0
    capsys.readouterr()
    heads, trunk_file = tmp_path / "run" / "heads.pth", tmp_path / "run" / "trunk.pth"
    trunk = torch.load(trunk_file, map_location="cpu", weights_only=True)
    ours = metric.LPIPS(net="alex", backbone_weights=trunk_file, head_weights=heads)
    assert set(trunk) == set(ours.backbone.features.state_dict())  # "0.weight", ...: no wrapper dict
    # docs/metric.md, "Downloaded models": the reference package, heads by model_path, trunk into its slices
    ref = lpips.LPIPS(pretrained=True, net="alex", model_path=str(heads), pnet_rand=True, verbose=False)
    ref.net.load_state_dict({k: trunk[k.split(".", 1)[1]] for k in ref.net.state_dict()})
    x0, x1 = to_tensor(data.ref), to_tensor(data.p0)
    with torch.no_grad():
        torch.testing.assert_close(ref.eval()(x0, x1), ours(x0, x1), rtol=1e-5, atol=1e-6)
    # the loader still reads the older wrapped format
    old = {"state_dict": {f"features.{k}": v for k, v in trunk.items()}, "source": "random:4"}
    torch.save(old, tmp_path / "old.pth")
    again = metric.LPIPS(net="alex", backbone_weights=tmp_path / "old.pth", head_weights=heads)
    assert again.describe()["backbone_weights"] == "file:old.pth (random:4)"
    with torch.no_grad():
        torch.testing.assert_close(again(x0, x1), ours(x0, x1))


# --- 4. training defaults to auto ---------------------------------------------------------------------------
def test_training_defaults_to_auto_which_offline_is_a_kmeans_trunk_from_the_data(bapps, tmp_path):
    _, data = bapps
    assert TrainConfig().backbone_weights == "auto"
    cfg = TrainConfig(epochs=1, epochs_decay=0, kmeans_patches=12)
    desc = train_heads(data, cfg, kmeans_cache_dir=tmp_path).model.describe()
    assert (
        desc["backbone_weights"].startswith("kmeans:0:") and "PERCEPTLAB_OFFLINE" in desc["backbone_reason"]
    )
    assert desc["kmeans_corpus"]["from"] == "the training data (ref, p0, p1)"


# --- 8. evaluate --model ------------------------------------------------------------------------------------
def test_cli_evaluate_scores_a_downloaded_model_as_one_metric(bapps, tmp_path, capsys):
    root, _ = bapps
    model = metric.LPIPS(net="alex", backbone_weights="random", seed=2, head_weights="random")
    model.save_heads(tmp_path / "h.pth")
    model.save_trunk(tmp_path / "t.pth")
    card = {"name": "m", "net": "alex", "version": "0.1", "trunk": {"source": "random:2"}}
    bundle = write_bundle(tmp_path / "bundle", heads=tmp_path / "h.pth", trunk=tmp_path / "t.pth", card=card)
    assert cli.main(["evaluate", "--bapps", str(root), "--model", str(bundle), "--n-boot", "20"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["metrics"]) == {"model:bundle", "l2_lab", "dssim_rgb", "psnr", "ms_ssim"}
    assert report["metrics"]["model:bundle"]["describe"]["head_weights"] == "bundle:bundle"
    (bundle / "heads.pth").write_bytes(b"altered")
    assert cli.main(["evaluate", "--bapps", str(root), "--model", str(bundle), "--metrics", "l2_lab"]) == 2
    assert capsys.readouterr().err.startswith("error: bundle: heads.pth does not match the sha256")
