"""The new-study form's live preview (studies.preview.study_preview): it draws what the options say, stays
small whatever they are, and refuses what the study itself would refuse, with the same message."""

import base64
import io
import time
import zipfile

import numpy as np
import pytest
from PIL import Image

from core.exceptions import ApplicationError
from studies.preview import PREVIEW_MAX_ITEMS, ops_words, study_preview

pytestmark = pytest.mark.django_db


def _pixels(uri: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))


def test_it_draws_four_triplets_with_the_ops_in_words(researcher_carol):
    preview = study_preview(kind="2afc", build_config={}, owner=researcher_carol)
    assert len(preview["items"]) == PREVIEW_MAX_ITEMS and preview["patch_size"] == 64
    for item in preview["items"]:
        assert [label for label, _ in item["images"]] == ["reference", "A", "B"]
        assert all(uri.startswith("data:image/png;base64,") for _, uri in item["images"])
        assert _pixels(item["images"][0][1]).shape == (64, 64, 3)
        assert item["caption"].startswith("A: ") and " · B: " in item["caption"]
        assert "{" not in item["caption"] and "severity" not in item["caption"]


def test_it_draws_jnd_pairs(researcher_carol):
    preview = study_preview(kind="jnd", build_config={"patch_size": 32}, owner=researcher_carol)
    assert all(
        [label for label, _ in item["images"]] == ["reference", "compared"] for item in preview["items"]
    )
    assert _pixels(preview["items"][0]["images"][1][1]).shape == (32, 32, 3)


def test_it_shows_only_the_chosen_distortion(researcher_carol):
    preview = study_preview(
        kind="2afc", build_config={"distortions": ["gaussian_blur"]}, owner=researcher_carol
    )
    assert {op for item in preview["items"] for op in item["ops"]} == {"gaussian_blur"}
    assert all(item["caption"].count("gaussian_blur") == 2 for item in preview["items"])


def test_the_severity_range_changes_the_pixels_and_the_captions(researcher_carol):
    def draw(low, high):
        return study_preview(
            kind="2afc",
            build_config={"distortions": ["gaussian_blur"], "severity_range": [low, high]},
            owner=researcher_carol,
        )["items"][0]

    light, heavy = draw(0.1, 0.1), draw(0.9, 0.9)
    assert "gaussian_blur 0.10" in light["caption"] and "gaussian_blur 0.90" in heavy["caption"]
    assert light["images"][0][1] == heavy["images"][0][1]  # the same reference patch
    assert not np.array_equal(_pixels(light["images"][1][1]), _pixels(heavy["images"][1][1]))
    blur_of = lambda item: np.abs(np.diff(_pixels(item["images"][1][1]).astype(float), axis=1)).mean()  # noqa: E731
    assert blur_of(heavy) < blur_of(light)  # the heavier blur leaves smaller pixel steps


def test_it_is_deterministic(researcher_carol):
    first = study_preview(kind="2afc", build_config={"seed": 7}, owner=researcher_carol)
    assert study_preview(kind="2afc", build_config={"seed": 7}, owner=researcher_carol) == first


@pytest.mark.parametrize(
    "build_config, field",
    [
        ({"patch_size": 1024}, "build_config.patch_size"),
        ({"n_items": 10**7}, "build_config.n_items"),
        ({"n_items": "many"}, "build_config.n_items"),
        ({"composition": {"p_compose": 2}}, "build_config.composition.p_compose"),
        ({"distortions": ["no_such_op"]}, "build_config"),
        (
            {"families": {"blur": 0, "noise": 0, "photometric": 0, "spatial": 0, "compression": 0}},
            "build_config",
        ),
        ({"source": {"type": "folder", "path": "/etc"}}, "build_config.source"),
        (
            {"source": {"type": "upload", "id": "00000000-0000-0000-0000-000000000000"}},
            "build_config.source.id",
        ),
    ],
)
def test_invalid_options_get_the_studys_own_message(researcher_carol, build_config, field):
    from studies.services import study_create

    with pytest.raises(ApplicationError) as preview_error:
        study_preview(kind="2afc", build_config=build_config, owner=researcher_carol)
    with pytest.raises(ApplicationError) as create_error:
        study_create(name="x", kind="2afc", build_config=build_config, owner=researcher_carol)
    assert preview_error.value.extra["field"] == field == create_error.value.extra["field"]
    assert preview_error.value.message == create_error.value.message


def test_hostile_sizes_stay_cheap(researcher_carol):
    study_preview(kind="2afc", build_config={}, owner=researcher_carol)  # photos loaded once
    started = time.perf_counter()
    preview = study_preview(
        kind="2afc",
        build_config={"n_items": 20_000, "patch_size": 256, "composition": {"p_compose": 1, "max_ops": 4}},
        owner=researcher_carol,
    )
    assert len(preview["items"]) == PREVIEW_MAX_ITEMS and "4 of 20000 items shown" in preview["capped"]
    assert time.perf_counter() - started < 5  # about 0.1 s on a laptop core; generous for a busy CI box


def test_ops_words_reads_a_record():
    record = {"ops": [{"name": "jpeg", "params": {"severity": 0.8512, "quality": 9}}]}
    assert ops_words(record) == "jpeg 0.85"
    assert ops_words(None).startswith("no distortion")


def test_an_uploaded_set_lends_its_first_photos_only(researcher_carol):
    from studies.preview import PREVIEW_MAX_PHOTOS
    from studies.sources import source_set_create

    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        for i in range(PREVIEW_MAX_PHOTOS + 2):
            photo = io.BytesIO()
            pixels = (np.random.default_rng(i).random((64, 80, 3)) * 255).astype("uint8")
            Image.fromarray(pixels).save(photo, format="PNG")
            zf.writestr(f"p{i}.png", photo.getvalue())
    archive.seek(0)
    photo_set = source_set_create(owner=researcher_carol, name="mine", archive=archive)
    preview = study_preview(
        kind="2afc",
        build_config={"source": {"type": "upload", "id": str(photo_set.pk)}, "patch_size": 32},
        owner=researcher_carol,
    )
    assert len(preview["items"]) == PREVIEW_MAX_ITEMS
    assert f"the set's first {PREVIEW_MAX_PHOTOS} photos only" in " ".join(preview["capped"])
