"""The feature cache's parts (training.features): round trip, parts added and merged, a corrupt or
truncated part computed again, the earlier single-file cache read once, the backbone digest rule; and the
baselines' per-item cache that a warm retrain reads instead of the val images."""

import logging

import numpy as np
import pytest

from training import features, services
from training.features import FeatureCache, part_records, read_part
from training.models import Evaluation

pytestmark = pytest.mark.django_db
RANDOM_ALEX = {"net": "alex", "weights": "random"}


def _items(study):
    return list(study.items.order_by("index").values("id", "ref_image", "p0_image", "p1_image"))


def _parts(settings, study, prefix="alex-"):
    folder = settings.MEDIA_ROOT / "features" / str(study.pk)
    return sorted(p for p in folder.glob(f"{prefix}*.npy"))


def test_a_part_round_trips_ids_and_both_rows(tmp_path):
    rng = np.random.default_rng(0)
    s0, s1 = rng.random((3, 5), dtype=np.float32), rng.random((3, 5), dtype=np.float32)
    ids = ["3f2b9c1e-0000-4000-8000-000000000001", "a", "3f2b9c1e-0000-4000-8000-000000000003"]
    np.save(tmp_path / "p.npy", part_records(ids, s0, s1), allow_pickle=False)
    back = read_part(tmp_path / "p.npy")
    assert [i.decode() for i in back["id"].tolist()] == ids
    assert np.array_equal(back["s0"], s0) and np.array_equal(back["s1"], s1)
    assert isinstance(back, np.memmap)  # mapped, not read whole
    with pytest.raises(ValueError, match="at most 36 bytes"):  # never cut short (two ids would collide)
        part_records(["x" * 37], s0[:1], s1[:1])


@pytest.mark.parametrize("content", [b"", b"not numpy at all", None])
def test_a_file_that_is_not_a_part_is_refused(tmp_path, content):
    path = tmp_path / "p.npy"
    if content is None:  # a plain float array: a numpy file, not a part
        np.save(path, np.zeros((2, 3), np.float32))
    else:
        path.write_bytes(content)
    with pytest.raises(ValueError, match="not a feature cache part"):
        read_part(path)


def test_new_items_add_a_part_and_every_instance_reads_them_all(make_study, settings):
    study = make_study(n_test=6, n_sentinels=0, n_practice=0)
    items = _items(study)
    model = services.backbone_model(RANDOM_ALEX)
    first = FeatureCache(study.pk, model)
    a0, a1 = first.stats(items[:4], kind="2afc")
    assert first.computed == 4 and len(_parts(settings, study)) == 1
    second = FeatureCache(study.pk, model)
    b0, b1 = second.stats(items, kind="2afc")
    assert second.computed == 2 and len(_parts(settings, study)) == 2  # only the new items were written
    assert np.array_equal(b0[:4], a0) and np.array_equal(b1[:4], a1)
    third = FeatureCache(study.pk, model)
    c0, c1 = third.stats(items[::-1], kind="2afc")  # any order, from both parts
    assert third.computed == 0 and np.array_equal(c0, b0[::-1]) and np.array_equal(c1, b1[::-1])
    again = third.stats(items[:1], kind="2afc")  # the same instance reads its parts once
    assert third.computed == 0 and np.array_equal(again[0], b0[:1])


def test_parts_past_the_limit_are_merged(make_study, settings, monkeypatch):
    monkeypatch.setattr(features, "MAX_PARTS", 2)
    study = make_study(n_test=6, n_sentinels=0, n_practice=0)
    items = _items(study)
    model = services.backbone_model(RANDOM_ALEX)
    whole = FeatureCache(study.pk, model).stats(items, kind="2afc")
    for name in _parts(settings, study):
        name.unlink()
    for k in range(len(items)):  # one item per job: a part each
        FeatureCache(study.pk, model).stats(items[: k + 1], kind="2afc")
        assert len(_parts(settings, study)) <= 3
    cache = FeatureCache(study.pk, model)
    s0, s1 = cache.stats(items, kind="2afc")
    assert cache.computed == 0  # the batch of one item each: the trunk's float rounding differs a little
    assert np.allclose(s0, whole[0], rtol=1e-5, atol=1e-7) and np.allclose(s1, whole[1], rtol=1e-5, atol=1e-7)
    assert sum(len(read_part(p)) for p in _parts(settings, study)) == len(items)  # merged without duplicates


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_damaged_part_is_removed_and_its_items_computed_again(make_study, settings, caplog, damage):
    study = make_study(n_test=4, n_sentinels=0, n_practice=0)
    items = _items(study)
    model = services.backbone_model(RANDOM_ALEX)
    s0, _ = FeatureCache(study.pk, model).stats(items, kind="2afc")
    (part,) = _parts(settings, study)
    if damage == "garbage":
        part.write_bytes(b"\x93NUMPY this is no part")
    else:
        part.write_bytes(part.read_bytes()[:-100])
    cache = FeatureCache(study.pk, model)
    with caplog.at_level(logging.WARNING, logger="training.features"):
        t0, _ = cache.stats(items, kind="2afc")
    assert "computed again" in caplog.text and not part.exists()
    assert cache.computed == len(items) and np.allclose(t0, s0, rtol=1e-5, atol=1e-7)
    assert len(_parts(settings, study)) == 1


def test_the_earlier_single_file_cache_is_read_once_and_stored_as_a_part(make_study, settings):
    study = make_study(n_test=4, n_sentinels=0, n_practice=0)
    items = _items(study)
    model = services.backbone_model(RANDOM_ALEX)
    s0, s1 = FeatureCache(study.pk, model).stats(items, kind="2afc")
    for part in _parts(settings, study):
        part.unlink()
    cache = FeatureCache(study.pk, model)
    legacy = settings.MEDIA_ROOT / cache.legacy  # as earlier versions wrote it: rows in sorted id order
    ids = [str(it["id"]) for it in items]
    order = np.argsort(ids)
    np.savez(legacy, ids=np.array(ids)[order], s0=s0[order], s1=s1[order])
    t0, t1 = cache.stats(items, kind="2afc")
    assert cache.computed == 0 and np.array_equal(t0, s0) and np.array_equal(t1, s1)
    assert not legacy.exists() and len(_parts(settings, study)) == 1


def test_another_backbone_of_the_net_removes_the_older_parts(make_study, settings):
    study = make_study(n_test=4, n_sentinels=0, n_practice=0)
    items = _items(study)
    cache = FeatureCache(study.pk, services.backbone_model(RANDOM_ALEX))
    cache.stats(items, kind="2afc")
    old_legacy = settings.MEDIA_ROOT / "features" / str(study.pk) / "alex-0123456789abcdef.npz"
    old_legacy.write_bytes(b"an earlier version's cache of another backbone")
    other = FeatureCache(study.pk, services.backbone_model({**RANDOM_ALEX, "seed": 1}))
    assert other.digest != cache.digest
    other.stats(items[:1], kind="2afc")
    assert _parts(settings, study, cache.prefix) == [] and not old_legacy.exists()
    assert len(_parts(settings, study, other.prefix)) == 1


def test_a_warm_retrain_reads_no_image_and_gives_the_same_baseline_rows(
    crowd, make_study, settings, monkeypatch
):
    study = make_study(
        n_test=24,
        n_sentinels=2,
        n_practice=0,
        categories=("traditional", "cnn"),
        config={
            "hit_size": 24,
            "training": {
                "every": 10,
                "backbones": [RANDOM_ALEX],
                "baselines": ["l2_lab", "psnr"],
                "official_lpips": False,
                "n_boot": 50,
                "min_steps": 50,
            },
        },
    )
    rng = np.random.default_rng(0)
    crowd(study, 5, lambda t, i: i.expected or ("p0", "p1")[int(rng.random() < 0.4)], prefix="w")
    first = services.study_retrain(study=study)

    def no_image(name, size=64):
        raise AssertionError(f"read {name}")

    monkeypatch.setattr(features, "media_patch", no_image)
    second = services.study_retrain(study=study)

    def rows(run):
        return {
            (r.metric, r.category): (r.score, r.ci_low, r.ci_high, r.n_items)
            for r in Evaluation.objects.filter(run=run)
        }

    assert rows(first["run"]) == rows(second["run"])
    assert {m for m, _ in rows(first["run"])} >= {"l2_lab", "psnr", "human", "trained alex-random lin"}


def test_cached_baseline_distances_are_the_ones_computed_on_all_images_at_once(make_study):
    study = make_study(n_test=7, n_sentinels=0, n_practice=0)
    items = _items(study)
    features.baseline_distances(study.pk, "2afc", ["l2_lab"], items[2:5])  # cached in another batch
    (d0, d1), (e0, e1) = features.baseline_distances(study.pk, "2afc", ["l2_lab", "psnr"], items)

    def images(field):
        return np.stack([features.media_patch(it[field]) for it in items])

    ref = images("ref_image")
    for fn, a, b in ((features.BASELINES["l2_lab"], d0, d1), (features.BASELINES["psnr"], e0, e1)):
        assert np.array_equal(a, features.apply_pairs(fn, ref, images("p0_image")))
        assert np.array_equal(b, features.apply_pairs(fn, ref, images("p1_image")))
