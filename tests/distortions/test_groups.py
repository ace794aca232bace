"""The engine's "groups" option: K distorted versions of one reference, asked as all their pairs."""

import itertools

import pytest

import distortions
from distortions.dataset import StudyBuilder, StudyConfig
from distortions.errors import DistortionError
from distortions.imageio import load_rgb


def test_a_group_shares_its_reference_and_split_and_each_member_is_one_image(tmp_path):
    cfg = {"kind": "2afc", "seed": 4, "n_items": 14, "groups": {"distortions": 4}, "sentinels": {"n": 2}}
    distortions.build_study(cfg, tmp_path, jobs=1, progress=False)
    items = distortions.read_manifest(tmp_path / "manifest.jsonl")
    assert all("group" not in i for i in items if i["role"] != "test")
    tests = [i for i in items if i["role"] == "test"]
    assert [i["group"]["id"] for i in tests] == [0] * 6 + [1] * 6 + [2] * 2  # the last group is cut short
    assert [tuple(i["group"]["members"]) for i in tests[:6]] == list(itertools.combinations(range(4), 2))
    assert all(i["group"]["size"] == 4 for i in tests)
    for gid in (0, 1, 2):
        group = [i for i in tests if i["group"]["id"] == gid]
        assert len({i["files"]["ref"] for i in group}) == 1 and len({i["split"] for i in group}) == 1
        member_files: dict = {}
        for item in group:
            for side, member in zip(("p0", "p1"), item["group"]["members"], strict=True):
                member_files.setdefault(member, set()).add(item["files"][side])
                # every output stays reproducible from its record
                ref = load_rgb(tmp_path / "images" / item["files"]["ref"])
                stored = load_rgb(tmp_path / "images" / item["files"][side])
                assert distortions.reapply(item["records"][side], ref).tobytes() == stored.tobytes()
        assert all(len(files) == 1 for files in member_files.values())
        assert len(set().union(*member_files.values())) == len(member_files)  # distinct members
    assert tests[0]["files"]["ref"] != tests[6]["files"]["ref"]


def test_groups_are_reproducible_and_leave_ungrouped_studies_unchanged(tmp_path):
    grouped = {"kind": "2afc", "seed": 9, "n_items": 6, "groups": {"distortions": 3}}
    a = distortions.build_study(grouped, tmp_path / "a", jobs=1, progress=False)
    b = distortions.build_study(grouped, tmp_path / "b", jobs=2, progress=False)
    assert a["manifest_sha256"] == b["manifest_sha256"]
    plain = StudyBuilder(StudyConfig.from_dict({"kind": "2afc", "seed": 9, "n_items": 6}))
    with_groups = StudyBuilder(StudyConfig.from_dict(grouped))
    for index in range(25):  # practice and sentinels are built as before; test items are the pairs
        x, y = plain.build_item(index), with_groups.build_item(index)
        same = x["pixels_sha256"] == y["pixels_sha256"]
        assert same == (x["role"] != "test")


@pytest.mark.parametrize(
    "groups, message",
    [
        ({"distortions": 2}, "K in"),
        ({"distortions": 17}, "K in"),
        ({"distortions": "4"}, "K in"),
        ({"references": 4}, "groups must be"),
        ([4], "groups must be"),
        (5, "groups must be"),
        (None, "groups must be"),
        ({"distortions": True}, "K in"),
    ],
)
def test_bad_groups_fail_clearly(groups, message):
    with pytest.raises(DistortionError, match=message):
        StudyConfig.from_dict({"kind": "2afc", "groups": groups})


def test_groups_need_a_2afc_study():
    with pytest.raises(DistortionError, match="2afc"):
        StudyConfig.from_dict({"kind": "jnd", "groups": {"distortions": 3}})
