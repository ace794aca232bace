import json
import subprocess
import sys

import numpy as np
import pytest

import distortions
from distortions.errors import DistortionError
from distortions.imageio import load_rgb


def _tree(path):
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_same_config_gives_byte_identical_output(tmp_path):
    cfg = {"kind": "2afc", "seed": 11, "n_items": 40}
    a = distortions.build_study(cfg, tmp_path / "a", jobs=1, progress=False)
    b = distortions.build_study(cfg, tmp_path / "b", jobs=2, progress=False)
    assert a["manifest_sha256"] == b["manifest_sha256"]
    assert _tree(tmp_path / "a") == _tree(tmp_path / "b")
    c = distortions.build_study({**cfg, "seed": 12}, tmp_path / "c", jobs=1, progress=False)
    assert c["manifest_sha256"] != a["manifest_sha256"]


def test_2afc_manifest_records_reproduce_the_stored_pngs(tmp_path):
    summary = distortions.build_study(
        {"kind": "2afc", "seed": 3, "n_items": 30}, tmp_path, jobs=1, progress=False
    )
    items = distortions.read_manifest(tmp_path / "manifest.jsonl")
    assert len(items) == summary["n_items"] == 30 + 15 + 4
    assert summary["counts"] == {"practice": 4, "sentinel": 15, "test": 30}
    for item in items:
        ref = load_rgb(tmp_path / "images" / item["files"]["ref"])
        for side in ("p0", "p1"):
            stored = load_rgb(tmp_path / "images" / item["files"][side])
            again = distortions.reapply(item["records"][side], ref)
            assert again.tobytes() == stored.tobytes()
    assert {i["split"] for i in items} == {"train", "val"}


def test_2afc_sentinels_have_the_light_noise_on_the_expected_side(tmp_path):
    distortions.build_study({"kind": "2afc", "seed": 5, "n_items": 0}, tmp_path, jobs=1, progress=False)
    items = distortions.read_manifest(tmp_path / "manifest.jsonl")
    sentinels = [i for i in items if i["role"] == "sentinel"]
    assert len(sentinels) == 15 and {i["expected"] for i in sentinels} == {"p0", "p1"}
    for item in sentinels:
        ref = load_rgb(tmp_path / "images" / item["files"]["ref"]).astype(float)
        err = {s: np.abs(load_rgb(tmp_path / "images" / item["files"][s]) - ref).mean() for s in ("p0", "p1")}
        assert min(err, key=err.get) == item["expected"]


def test_jnd_pairs_include_identical_pairs_and_noise_sentinels(tmp_path):
    cfg = {"kind": "jnd", "seed": 2, "n_items": 60, "jnd": {"identical_fraction": 0.25}}
    distortions.build_study(cfg, tmp_path, jobs=1, progress=False)
    items = distortions.read_manifest(tmp_path / "manifest.jsonl")
    tests = [i for i in items if i["role"] == "test"]
    identical = [i for i in tests if i["files"]["p0"] == i["files"]["p1"]]
    assert 5 <= len(identical) <= 30
    assert all(i["files"]["p0"] == i["files"]["ref"] for i in items)
    sentinels = [i for i in items if i["role"] == "sentinel"]
    assert len(sentinels) == 40
    for item in sentinels:
        same = item["files"]["p0"] == item["files"]["p1"]
        assert item["expected"] == ("same" if same else "different")


@pytest.mark.parametrize(
    "cfg, message",
    [
        ({"n_items": 3}, "kind"),
        ({"kind": "3afc"}, "kind must be"),
        ({"kind": "2afc", "bogus": 1}, "unknown study config keys"),
        ({"kind": "2afc", "families": {"nois": 1}}, "unknown families"),
        ({"kind": "2afc", "distortions": ["nope"]}, "unknown distortion"),
        ({"kind": "2afc", "splits": {"test": 1}}, "splits"),
        ({"kind": "2afc", "source": {"type": "folder", "path": "/nonexistent"}}, "not found"),
    ],
)
def test_bad_configs_fail_clearly(cfg, message):
    with pytest.raises(DistortionError, match=message):
        distortions.StudyConfig.from_dict(cfg)


def _cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "distortions", *args], capture_output=True, text=True, cwd=cwd
    )


def test_cli_lists_one_name_per_line():
    result = _cli("list")
    assert result.returncode == 0
    assert result.stdout.split() == distortions.names()


def test_cli_builds_a_study_and_reports_errors(tmp_path):
    config = tmp_path / "study.json"
    config.write_text(json.dumps({"kind": "2afc", "seed": 1, "n_items": 12}))
    result = _cli("build-study", str(config), str(tmp_path / "out"), "--jobs", "2")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["n_items"] == 12 + 15 + 4
    assert "build 2afc study" in result.stderr  # the progress bar
    config.write_text(json.dumps({"kind": "2afc", "families": {"x": 1}}))
    bad = _cli("build-study", str(config), str(tmp_path / "out2"))
    assert bad.returncode == 2 and "unknown families" in bad.stderr


def test_contact_sheet_has_a_row_per_distortion(tmp_path):
    from PIL import Image

    from distortions.contact_sheet import contact_sheet

    path = contact_sheet(tmp_path / "sheet.png")
    with Image.open(path) as img:
        assert img.height > 20 * 128 and img.width > 6 * 128
