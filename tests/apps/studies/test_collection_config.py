"""studies.collection: the merged, validated collection config, remembered per config for the answer path."""

import pytest

from core.exceptions import ApplicationError
from studies.collection import DEFAULTS, collection_config


def test_a_remembered_config_is_a_fresh_equal_dict_each_time():
    config = {"hit_size": 30, "judgments_per_item": {"train": 4}}
    first = collection_config("2afc", config)
    assert first["hit_size"] == 30 and first["judgments_per_item"]["train"] == 4
    assert first["judgments_per_item"]["val"] == DEFAULTS["2afc"]["judgments_per_item"]["val"]
    first["judgments_per_item"]["train"] = 99  # a caller changing its copy changes nobody else's
    first["timing"]["ref_ms"] = -1
    second = collection_config("2afc", config)
    assert (
        second["judgments_per_item"]["train"] == 4
        and second["timing"] == collection_config("2afc", {})["timing"]
    )
    assert second is not first and second == collection_config("2afc", dict(reversed(list(config.items()))))


def test_different_configs_and_kinds_are_told_apart():
    assert collection_config("2afc", {"hit_size": 10})["hit_size"] == 10
    assert collection_config("2afc", {"hit_size": 11})["hit_size"] == 11
    assert (
        collection_config("jnd", {"hit_size": 10})["timing"]
        != collection_config("2afc", {"hit_size": 10})["timing"]
    )


def test_an_invalid_config_is_refused_every_time():
    for _ in range(3):
        with pytest.raises(ApplicationError, match="hit_size"):
            collection_config("2afc", {"hit_size": 0})
    with pytest.raises(ApplicationError, match="unknown study setting"):
        collection_config("2afc", {"nope": 1})
