"""Every registered distortion gets the same battery of tests, generated from the registry."""

import json

import numpy as np
import pytest

import distortions
from distortions import registry
from distortions.errors import DistortionError
from distortions.imageio import pixels_sha256

ALL = [n for n in registry.names() if registry.get(n).family != "cnn"]  # the CNN family: test_cnn.py


def test_it_registers_the_papers_twenty_by_family():
    by_family = {f: registry.names(f) for f in ("photometric", "noise", "blur", "spatial", "compression")}
    assert {f: len(v) for f, v in by_family.items()} == {
        "photometric": 4,
        "noise": 6,
        "blur": 2,
        "spatial": 7,
        "compression": 1,
    }
    assert len(ALL) == 20
    assert registry.names("cnn") == ["cnn_autoencoder"]


@pytest.mark.parametrize("name", ALL)
def test_apply_is_deterministic(name, patch):
    dist = registry.get(name)()
    params = dist.sample(np.random.default_rng(5))
    a, b = dist.apply(patch, params), dist.apply(patch.copy(), json.loads(json.dumps(params)))
    assert a.tobytes() == b.tobytes()
    assert patch.tobytes() == patch.copy().tobytes()  # input untouched


@pytest.mark.parametrize("name", ALL)
def test_sampling_is_reproducible_from_the_seed(name):
    dist = registry.get(name)()
    assert dist.sample(np.random.default_rng(9)) == dist.sample(np.random.default_rng(9))


@pytest.mark.parametrize("name", ALL)
def test_record_round_trip_reproduces_identical_bytes(name, patch):
    dist = registry.get(name)()
    ops = [{"name": name, "params": dist.sample(np.random.default_rng(3))}]
    out, record = distortions.distort(patch, ops, seed={"entropy": 1, "spawn_key": [0, 1]})
    record = json.loads(json.dumps(record))  # through JSON, as stored
    again = distortions.reapply(record, patch)
    assert again.tobytes() == out.tobytes()
    assert record["output"]["sha256"] == pixels_sha256(out)
    assert record["ops"][0]["name"] == name
    assert {"numpy", "scipy", "scikit-image", "pillow"} <= set(record["env"])


@pytest.mark.parametrize("name", ALL)
def test_spec_json_round_trip(name):
    dist = registry.get(name)(severity_range=(0.2, 0.7))
    clone = registry.Distortion.from_dict(json.loads(json.dumps(dist.to_dict())))
    assert clone == dist and clone.severity_range == (0.2, 0.7)
    rng_a, rng_b = np.random.default_rng(1), np.random.default_rng(1)
    assert clone.sample(rng_a) == dist.sample(rng_b)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("shape", [(64, 64), (48, 80)])
def test_shape_dtype_and_range_are_kept(name, shape, patches):
    image = np.ascontiguousarray(np.concatenate(patches[:2], axis=1)[: shape[0], : shape[1]])
    dist = registry.get(name)()
    for seed in range(3):
        out = dist.apply(image, dist.params_at(1.0, np.random.default_rng(seed)))
        assert out.shape == image.shape and out.dtype == np.uint8


@pytest.mark.parametrize("name", ALL)
def test_higher_severity_means_more_pixel_error(name, patches):
    dist = registry.get(name)()
    errors = []
    for severity in (0.05, 0.5, 1.0):
        per_patch = []
        for k, p in enumerate(patches):
            params = dist.params_at(severity, np.random.default_rng(k))  # same nuisance at every severity
            per_patch.append(np.abs(dist.apply(p, params).astype(float) - p).mean())
        errors.append(float(np.mean(per_patch)))
    assert errors[0] < errors[1] < errors[2], errors
    assert errors[2] > 3.0  # severe is clearly visible (mean |error| > 3 grey levels)


@pytest.mark.parametrize("name", ALL)
def test_invalid_params_raise_a_clear_error(name, patch):
    dist = registry.get(name)()
    good = dist.sample(np.random.default_rng(0))
    key = next(iter(dist.params_schema))
    with pytest.raises(DistortionError, match="missing"):
        dist.apply(patch, {k: v for k, v in good.items() if k != key})
    with pytest.raises(DistortionError, match="unknown"):
        dist.apply(patch, {**good, "bogus": 1})
    with pytest.raises(DistortionError, match="outside its valid range"):
        dist.apply(patch, {**good, key: dist.params_schema[key].high + 1000})
    with pytest.raises(DistortionError, match="must be a number"):
        dist.apply(patch, {**good, key: "big"})
    with pytest.raises(DistortionError, match="severity_range"):
        registry.get(name)(severity_range=(0.8, 0.2))
    with pytest.raises(DistortionError, match="uint8"):
        dist.apply(patch.astype(np.float32), good)


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(DistortionError, match="gaussian_blur"):
        registry.get("gausian_blur")


# Golden pixel hashes: catch silent drift in numpy/scipy/scikit-image/Pillow/OpenCV behaviour.
# Recorded with numpy 2.4, scipy 1.17, scikit-image 0.26, Pillow 13.0, OpenCV 5.0 on x86_64.
GOLDEN = {
    "bilateral": "75796c03fbeebd8f9237d047aa6e2b6fda0a08395ea113c1a0c4294ff03cfefe",
    "gaussian_blur": "9e401891a678d88f3ca7a05d1a5932721263a7d306ce943d8245f6ed63adc944",
    "homography": "eb1909d49e6c6af99749563208b93260db6484b94f419d07a758140874b796ae",
    "jpeg": "4202e22069dd6e94eb03709259f3f64e9ad141b312d718942aa9547544babdd9",
    "pink_noise": "39db8cd9c636720fe6de8e84157608c8fa0a81660d6fae7bad005cbc459f700b",
}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_hashes_for_fixed_seeds(name):
    from distortions.contact_sheet import default_patch

    dist = registry.get(name)()
    out = dist.apply(default_patch(), dist.sample(np.random.default_rng(2024)))
    assert pixels_sha256(out) == GOLDEN[name]
