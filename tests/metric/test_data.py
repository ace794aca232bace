import json

import numpy as np
import pytest

from metric.data import (
    JNDData,
    TwoAFCData,
    read_bapps_2afc,
    read_bapps_jnd,
    read_manifest,
    write_bapps_2afc,
    write_bapps_jnd,
)
from metric.errors import MetricError


def _two_afc(real_patches, n=5):
    rng = np.random.default_rng(0)
    cats = ["traditional"] * 3 + ["cnn"] * (n - 3)
    return TwoAFCData(
        real_patches[0:n],
        real_patches[n : 2 * n],
        real_patches[2 * n : 3 * n],
        rng.choice([0, 0.2, 0.4, 0.6, 0.8, 1.0], n),
        cats,
    )


def test_bapps_2afc_round_trip(tmp_path, real_patches):
    data = _two_afc(real_patches)
    write_bapps_2afc(tmp_path / "val", data)
    assert sorted(p.name for p in (tmp_path / "val" / "traditional" / "judge").iterdir())[0] == "000000.npy"
    back = read_bapps_2afc([tmp_path / "val" / "cnn", tmp_path / "val" / "traditional"])
    order = [3, 4, 0, 1, 2]  # cnn first, then traditional
    assert np.array_equal(back.ref, data.ref[order]) and np.array_equal(back.p1, data.p1[order])
    assert np.allclose(back.p, data.p[order]) and back.categories == [data.categories[i] for i in order]


def test_bapps_jnd_round_trip(tmp_path, real_patches):
    data = JNDData(real_patches[:4], real_patches[4:8], np.array([0, 1 / 3, 2 / 3, 1.0]), ["cnn"] * 4)
    write_bapps_jnd(tmp_path / "jnd", data)
    back = read_bapps_jnd(tmp_path / "jnd" / "cnn")
    assert np.array_equal(back.p1, data.p1) and np.allclose(back.same, data.same, atol=1e-6)


def test_bapps_reader_rejects_mismatched_folders(tmp_path, real_patches):
    write_bapps_2afc(tmp_path, _two_afc(real_patches))
    (tmp_path / "traditional" / "p0" / "000001.png").rename(tmp_path / "traditional" / "p0" / "000009.png")
    with pytest.raises(MetricError, match="stems disagree"):
        read_bapps_2afc(tmp_path / "traditional")
    (tmp_path / "traditional" / "p1" / "000001.png").unlink()
    with pytest.raises(MetricError, match="same, non-zero number"):
        read_bapps_2afc(tmp_path / "traditional")


def test_bapps_reader_resizes_256_to_64(tmp_path, real_patches):
    from PIL import Image

    data = _two_afc(real_patches, n=4)
    write_bapps_2afc(tmp_path, data)
    for sub in ("ref", "p0", "p1"):
        for png in (tmp_path / "traditional" / sub).glob("*.png"):
            Image.open(png).resize((256, 256), Image.NEAREST).save(png)
    back = read_bapps_2afc(tmp_path / "traditional")
    assert back.ref.shape[1:] == (64, 64, 3)


def test_manifest_reader(tmp_path, real_patches):
    from PIL import Image

    rows = []
    for i in range(3):
        names = {}
        for k, arr in (("ref", real_patches[i]), ("p0", real_patches[3 + i]), ("p1", real_patches[6 + i])):
            Image.fromarray(arr).save(tmp_path / f"{k}{i}.png")
            names[k] = f"{k}{i}.png"
        rows.append(
            {"kind": "2afc", "split": "val", "category": "traditional", **names, "p1_votes": i, "n_votes": 5}
        )
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    data = read_manifest(tmp_path / "m.jsonl")
    assert np.allclose(data.p, [0, 0.2, 0.4]) and list(data.n_votes) == [5, 5, 5]
    assert np.array_equal(data.p1[2], real_patches[8])
    with pytest.raises(MetricError, match="no 2afc items in split"):
        read_manifest(tmp_path / "m.jsonl", split="train")
