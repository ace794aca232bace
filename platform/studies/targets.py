"""Per-item judgment targets (Item.n_target): what the assignment engine compares an item's load with.

Every item starts at its split's count (the minimum of a train range); Bayesian stopping raises a train
item one vote at a time (judgments.stopping), and a config change may only raise the counts
(studies.lifecycle), so a sync only ever raises targets. Call it wherever items are created or the counts
change: builds, imports, restores, the demo's extra items, the settings page.
"""

from __future__ import annotations

from studies.collection import votes_range
from studies.models import Item, Study


def item_targets_sync(*, study: Study, config: dict | None = None) -> int:
    """Raise every item of the study below its split's minimum count to it; returns the rows changed."""
    config = config or study.collection
    changed = 0
    for split in Item.Split.values:
        low, _ = votes_range(config, split)
        changed += Item.objects.filter(study=study, split=split, n_target__lt=low).update(n_target=low)
    return changed
