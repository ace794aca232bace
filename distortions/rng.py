"""Per-item random streams derived from one study seed (numpy SeedSequence); no global RNG anywhere.

An item's streams are `SeedSequence(entropy=study_seed, spawn_key=(item_index, stream))`: independent,
reproducible, and recorded as {"entropy", "spawn_key"} in every record.
"""

from __future__ import annotations

import numpy as np

# Stream numbers inside one item.
STREAM_PATCH = 0
STREAM_P0 = 1
STREAM_P1 = 2
STREAM_LAYOUT = 3
# A group member's chain (config "groups"): spawn_key (the group's first item index, STREAM_MEMBER, member).
STREAM_MEMBER = 4


def seed_record(entropy: int, *spawn_key: int) -> dict:
    return {"entropy": int(entropy), "spawn_key": [int(k) for k in spawn_key]}


def generator_from(seed: dict) -> np.random.Generator:
    """The Generator described by a seed record."""
    ss = np.random.SeedSequence(entropy=seed["entropy"], spawn_key=tuple(seed["spawn_key"]))
    return np.random.Generator(np.random.PCG64(ss))


def item_generator(entropy: int, item_index: int, stream: int) -> tuple[np.random.Generator, dict]:
    seed = seed_record(entropy, item_index, stream)
    return generator_from(seed), seed


def child_seed(rng: np.random.Generator) -> int:
    """An integer seed for a pure op (e.g. a noise realisation), drawn from the item's stream."""
    return int(rng.integers(0, 2**32 - 1))
