"""metric.bundle: a model bundle written and read back (folder and zip), and a hostile zip refused with a
clear MetricError before anything of it is used or written outside a temporary folder."""

import json
import stat
import zipfile

import pytest
import torch

import metric
from metric.bundle import (
    CARD_JSON,
    HEADS,
    MEMBER_CAPS,
    TRUNK,
    card_markdown,
    load_bundle,
    read_card,
    write_bundle,
    write_bundle_zip,
)
from metric.cli import main
from metric.errors import MetricError

CARD = {
    "name": "test model",
    "net": "alex",
    "version": "0.1",
    "variant": "lin",
    "trunk": {"requested": "random", "used": "random", "reason": "the control", "source": "random:3"},
    "data": {"study": {"id": "s", "name": "s", "kind": "2afc"}, "train_items": 3, "categories": ["cnn"]},
    "evaluation": {
        "split": "val",
        "measure": "2afc",
        "n_items": 4,
        "n_judgments": 20,
        "metrics": [
            {
                "metric": "trained alex-random lin",
                "kind": "trained",
                "category": "all",
                "score": 0.7,
                "ci_low": 0.6,
                "ci_high": 0.8,
                "n_items": 4,
                "this_model": True,
            }
        ],
    },
}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    out = tmp_path_factory.mktemp("model")
    model = metric.LPIPS(net="alex", backbone_weights="random", seed=3, head_weights="random")
    model.save_heads(out / "h.pth")
    torch.save(model.backbone.features.state_dict(), out / "t.pth")
    return model, out / "h.pth", out / "t.pth"


@pytest.fixture
def bundle(files, tmp_path):
    _, heads, trunk = files
    return write_bundle_zip(tmp_path / "m.zip", heads=heads, trunk=trunk, card=CARD, folder="perceptlab-m")


def test_a_bundle_loads_as_the_model_it_was_written_from(files, bundle, tmp_path):
    model, heads, trunk = files
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    folder = write_bundle(tmp_path / "folder", heads=heads, trunk=trunk, card=CARD)
    with torch.no_grad():
        want = model(x[:2], x[2:])
        assert torch.equal(load_bundle(bundle)(x[:2], x[2:]), want)
        assert torch.equal(load_bundle(folder)(x[:2], x[2:]), want)
    card = read_card(bundle)
    assert card["format"] == "perceptlab-model/1" and set(card["files"]) == {HEADS, TRUNK}
    assert "pnet_rand=True" in card["usage"]["lpips"] and "load_bundle" in card["usage"]["metric"]
    text = card_markdown(card)
    assert "0.600–0.800" in text and "the control" in text and card["files"][TRUNK]["sha256"] in text


def test_an_imagenet_bundle_ships_no_trunk_and_needs_the_weights(files, tmp_path):
    _, heads, _ = files
    path = write_bundle_zip(tmp_path / "i.zip", heads=heads, card={**CARD, "trunk": {"used": "imagenet"}})
    with zipfile.ZipFile(path) as zf:
        assert TRUNK not in {n.split("/")[-1] for n in zf.namelist()}
    assert "pnet_rand" not in read_card(path)["usage"]["lpips"]
    with pytest.raises(MetricError, match="ImageNet weights"):  # offline in tests: says what is missing
        load_bundle(path, allow_download=False)


def _zip(path, members: dict, *, symlink: str | None = None):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
    return path


def _members(bundle) -> dict:
    with zipfile.ZipFile(bundle) as zf:
        return {n.split("/")[-1]: zf.read(n) for n in zf.namelist()}


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda m: {"../heads.pth": m[HEADS], CARD_JSON: m[CARD_JSON]}, "no paths"),
        (lambda m: {"/tmp/heads.pth": m[HEADS], CARD_JSON: m[CARD_JSON]}, "no paths"),
        (lambda m: {"a/b/heads.pth": m[HEADS], CARD_JSON: m[CARD_JSON]}, "no paths"),
        (lambda m: {"..\\heads.pth": m[HEADS], CARD_JSON: m[CARD_JSON]}, "no paths"),
        (lambda m: {**m, "evil.py": b"import os"}, "unexpected member"),
        (lambda m: {"x/heads.pth": m[HEADS], f"y/{CARD_JSON}": m[CARD_JSON]}, "several folders"),
        (lambda m: {**m, HEADS: b"\0" * (MEMBER_CAPS[HEADS] + 1)}, "over its cap"),
        (lambda m: {**m, HEADS: m[HEADS][:-1] + b"\1"}, "sha256"),
        (lambda m: {k: v for k, v in m.items() if k != CARD_JSON}, "model_card.json is missing"),
        (lambda m: {**m, CARD_JSON: b"{not json"}, "not JSON"),
        (lambda m: {**m, CARD_JSON: json.dumps({"format": "other"}).encode()}, "not a perceptlab-model/1"),
        (
            lambda m: {**m, CARD_JSON: json.dumps({**json.loads(m[CARD_JSON]), "net": "resnet"}).encode()},
            "is not one of",
        ),
        (
            lambda m: {**m, CARD_JSON: json.dumps({**json.loads(m[CARD_JSON]), "net": ["alex"]}).encode()},
            "is not one of",
        ),
        (
            lambda m: {**m, CARD_JSON: json.dumps({**json.loads(m[CARD_JSON]), "version": {}}).encode()},
            "is not one of",
        ),
        (
            lambda m: {
                **m,
                CARD_JSON: json.dumps({**json.loads(m[CARD_JSON]), "files": {"../../x": {}}}).encode(),
            },
            "files must list",
        ),
        (lambda m: {k: v for k, v in m.items() if k != TRUNK}, "listed in the card but missing"),
    ],
)
def test_a_hostile_bundle_zip_is_refused_with_a_clear_error(bundle, tmp_path, make, message):
    hostile = _zip(tmp_path / "hostile.zip", make(_members(bundle)))
    with pytest.raises(MetricError, match=message):
        load_bundle(hostile)
    assert not (tmp_path / "heads.pth").exists() and not (tmp_path.parent / "heads.pth").exists()


def test_links_duplicates_and_non_zips_are_refused(bundle, tmp_path):
    m = _members(bundle)
    with pytest.raises(MetricError, match="symbolic link"):
        load_bundle(_zip(tmp_path / "link.zip", {CARD_JSON: m[CARD_JSON]}, symlink=HEADS))
    dup = tmp_path / "dup.zip"
    with zipfile.ZipFile(dup, "w") as zf:
        for name, data in m.items():
            zf.writestr(name, data)
        with pytest.warns(UserWarning):
            zf.writestr(HEADS, m[HEADS])
    with pytest.raises(MetricError, match="appears twice"):
        load_bundle(dup)
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(MetricError, match="not a readable zip"):
        load_bundle(junk)
    with pytest.raises(MetricError, match="bundle not found"):
        load_bundle(tmp_path / "absent.zip")


def test_the_cli_reports_a_hostile_bundle_as_an_error(bundle, tmp_path, capsys):
    from PIL import Image

    hostile = _zip(tmp_path / "h.zip", {**_members(bundle), "../../x.sh": b"echo"})
    for name in ("a.png", "b.png"):
        Image.new("RGB", (32, 32), (10, 20, 30)).save(tmp_path / name)
    assert main(["distance", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "--model", str(hostile)]) == 2
    assert "error: bundle zip" in capsys.readouterr().err
