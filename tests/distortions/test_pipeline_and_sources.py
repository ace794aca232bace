import numpy as np
import pytest
from PIL import Image

import distortions
from distortions import registry
from distortions.errors import DistortionError, RecordMismatchError
from distortions.pipeline import ChainSampler, allowed_pairs, chain_allowed
from distortions.sources import FilesSource, FolderSource, SkimagePhotos, source_from_dict


def test_allowed_pairs_follow_the_documented_rules():
    pairs = allowed_pairs()
    assert len(pairs) == 287
    assert ("gaussian_blur", "jpeg") in pairs and ("jpeg", "gaussian_blur") not in pairs
    assert ("contrast", "saturation") in pairs  # photometric may repeat the family
    assert ("pink_noise", "blue_noise") not in pairs
    assert not chain_allowed(["shift", "shift"])


def test_chain_sampler_composes_and_keeps_jpeg_last():
    sampler = ChainSampler(p_compose=1.0, max_ops=3)
    rng = np.random.default_rng(0)
    chains = [[op["name"] for op in sampler.sample(rng)] for _ in range(300)]
    assert all(2 <= len(c) <= 3 for c in chains)
    assert all(chain_allowed(c) for c in chains)
    assert any(c[-1] == "jpeg" for c in chains)


def test_family_weights_select_families():
    sampler = ChainSampler(family_weights={"blur": 1.0}, p_compose=0.0)
    rng = np.random.default_rng(1)
    assert {sampler.sample(rng)[0]["name"] for _ in range(100)} == {"gaussian_blur", "bilateral"}
    with pytest.raises(DistortionError, match="unknown families"):
        ChainSampler(family_weights={"blurr": 1.0})


def test_composed_record_reapplies(patch):
    ops = ChainSampler(p_compose=1.0, max_ops=2).sample(np.random.default_rng(4))
    out, record = distortions.distort(patch, ops)
    assert distortions.reapply(record, patch).tobytes() == out.tobytes()
    with pytest.raises(RecordMismatchError):
        distortions.reapply(record, np.ascontiguousarray(patch[::-1]))


def test_skimage_source_is_deterministic_and_records_the_crop():
    src = SkimagePhotos()
    a, meta_a = src.sample_patch(np.random.default_rng(7))
    b, meta_b = SkimagePhotos().sample_patch(np.random.default_rng(7))
    assert a.tobytes() == b.tobytes() and meta_a == meta_b
    assert meta_a["source"].startswith("skimage:") and meta_a["box"][2:] == [64, 64]
    y, x = meta_a["box"][:2]
    full = next(im.image for im in src.images if im.source_id == meta_a["source"])
    assert np.array_equal(full[y : y + 64, x : x + 64], a)


def test_flat_patches_are_skipped(tmp_path):
    flat = np.full((200, 200, 3), 128, np.uint8)
    textured = np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8)
    Image.fromarray(flat).save(tmp_path / "a_flat.png")
    Image.fromarray(textured).save(tmp_path / "b_textured.png")
    src = FolderSource(str(tmp_path))
    rng = np.random.default_rng(0)
    metas = [src.sample_patch(rng, skip_flat=True)[1] for _ in range(30)]
    assert {m["source"] for m in metas} == {"file:b_textured.png"}
    metas = [src.sample_patch(rng, skip_flat=False)[1] for _ in range(30)]
    assert "file:a_flat.png" in {m["source"] for m in metas}


def test_sources_fail_clearly(tmp_path):
    with pytest.raises(DistortionError, match="not found"):
        FolderSource(str(tmp_path / "missing"))
    with pytest.raises(DistortionError, match="no images"):
        FolderSource(str(tmp_path))
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(DistortionError, match="cannot read"):
        FilesSource([str(tmp_path / "bad.png")]).images  # noqa: B018
    with pytest.raises(DistortionError, match="unknown source type"):
        source_from_dict({"type": "s3"})


def test_registry_never_imports_django():
    import ast
    import pathlib

    for pkg in ("distortions", "metric"):
        for path in pathlib.Path(pkg).rglob("*.py"):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if isinstance(node, ast.Import | ast.ImportFrom):
                    mods = (
                        [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                    )
                    assert not any(m.split(".")[0] in {"django", "rest_framework", "celery"} for m in mods), (
                        path
                    )


def test_names_are_unique_and_families_known():
    assert len(set(registry.names())) == len(registry.names())
    assert {registry.get(n).family for n in registry.names()} <= set(registry.FAMILIES)
