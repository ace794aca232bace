"""Attacks on metric.bundle.load_bundle with a bundle whose card is self-consistent (the attacker wrote the
card, so its sha256s match): the payload is in the files themselves. Nothing of it may run (torch.load is
weights_only), and, as the module promises, "anything else is a MetricError saying what": never a raw
UnpicklingError, RecursionError or AttributeError, which `python -m metric distance --model` shows as a
traceback instead of its `error:` line."""

import json
import os

import pytest
import torch

import metric
from metric.bundle import CARD_JSON, load_bundle, write_bundle, write_bundle_zip
from metric.cli import main
from metric.errors import MetricError

CARD = {
    "name": "hostile",
    "net": "alex",
    "version": "0.1",
    "variant": "lin",
    "trunk": {"requested": "random", "used": "random", "reason": "x", "source": "random:0"},
    "data": {},
    "evaluation": {},
}


class _RunsCode:
    """Unpickling this runs a shell command (a classic malicious .pth)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    out = tmp_path_factory.mktemp("good")
    model = metric.LPIPS(net="alex", backbone_weights="random", seed=1, head_weights="random")
    model.save_heads(out / "h.pth")
    torch.save(model.backbone.features.state_dict(), out / "t.pth")
    return out / "h.pth", out / "t.pth"


def _evil(tmp_path, name="evil.pth"):
    marker = tmp_path / "PWNED"
    path = tmp_path / name
    torch.save(_RunsCode(marker), path)
    return path, marker


@pytest.mark.parametrize("as_zip", [False, True])
def test_a_pickle_payload_in_the_heads_runs_nothing_and_is_a_metric_error(good, tmp_path, as_zip):
    evil, marker = _evil(tmp_path)
    _, trunk = good
    if as_zip:
        bundle = write_bundle_zip(tmp_path / "b.zip", heads=evil, trunk=trunk, card=CARD, folder="b")
    else:
        bundle = write_bundle(tmp_path / "b", heads=evil, trunk=trunk, card=CARD)
    with pytest.raises(MetricError):  # today: _pickle.UnpicklingError from metric.heads.load_head_file
        load_bundle(bundle)
    assert not marker.exists()


def test_a_pickle_payload_in_the_trunk_runs_nothing_and_is_a_metric_error(good, tmp_path):
    evil, marker = _evil(tmp_path)
    heads, _ = good
    bundle = write_bundle_zip(tmp_path / "b.zip", heads=heads, trunk=evil, card=CARD, folder="b")
    with pytest.raises(MetricError, match="not a readable PyTorch weights file"):
        load_bundle(bundle)
    assert not marker.exists()


def test_garbage_heads_are_a_metric_error(good, tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x80\x02not a torch file at all")
    bundle = write_bundle(tmp_path / "b", heads=junk, trunk=good[1], card=CARD)
    with pytest.raises(MetricError):
        load_bundle(bundle)


def test_heads_holding_strings_instead_of_tensors_are_a_metric_error(good, tmp_path):
    """weights_only allows str values; load_reference_state_dict then calls .shape on one."""
    fake = tmp_path / "fake.pth"
    torch.save({f"lin{k}.model.1.weight": "not a tensor" for k in range(5)}, fake)
    bundle = write_bundle(tmp_path / "b", heads=fake, trunk=good[1], card=CARD)
    with pytest.raises(MetricError):  # today: AttributeError: 'str' object has no attribute 'shape'
        load_bundle(bundle)


def test_a_deeply_nested_card_is_a_metric_error(tmp_path):
    folder = tmp_path / "b"
    folder.mkdir()
    (folder / CARD_JSON).write_text("[" * 200_000 + "]" * 200_000)  # 400 kB, under the 1 MiB cap
    with pytest.raises(MetricError):  # today: RecursionError from json.loads
        load_bundle(folder)


def test_a_card_whose_trunk_is_not_an_object_is_a_metric_error_or_loads(good, tmp_path):
    heads, trunk = good
    folder = write_bundle(tmp_path / "b", heads=heads, trunk=trunk, card=CARD)
    card = json.loads((folder / CARD_JSON).read_text())
    (folder / CARD_JSON).write_text(json.dumps({**card, "trunk": "a string"}))  # sha256s cover files only
    try:
        load_bundle(folder)
    except MetricError:
        pass  # today: AttributeError: 'str' object has no attribute 'get' (bundle.py:357)


def test_the_cli_reports_a_pickle_payload_as_an_error_not_a_traceback(good, tmp_path, capsys):
    from PIL import Image

    evil, marker = _evil(tmp_path)
    bundle = write_bundle_zip(tmp_path / "b.zip", heads=evil, trunk=good[1], card=CARD, folder="b")
    for name in ("a.png", "c.png"):
        Image.new("RGB", (32, 32), (10, 20, 30)).save(tmp_path / name)
    argv = ["distance", str(tmp_path / "a.png"), str(tmp_path / "c.png"), "--model", str(bundle)]
    assert main(argv) == 2
    assert "error:" in capsys.readouterr().err
    assert not marker.exists()
