"""Per-item judgment targets (Item.n_target): what the assignment engine compares an item's load with.

Every item starts at its split's count (the minimum of a train range); Bayesian stopping raises a train
item one vote at a time (judgments.stopping), and a config change may only raise the counts
(studies.lifecycle), so a sync only ever raises targets. Call it wherever items are created or the counts
change: builds, imports, restores, the demo's extra items, the settings page.
"""

from __future__ import annotations

import functools
import operator

from django.db import connection, transaction
from django.db.models import Q

from studies.collection import votes_range
from studies.models import Item, Study


def item_targets_sync(*, study: Study, config: dict | None = None) -> int:
    """Raise every item of the study below its split's minimum count to it; returns the rows changed."""
    config = config or study.collection
    lows = {split: votes_range(config, split)[0] for split in Item.Split.values}
    below = {split: Q(split=split, n_target__lt=low) for split, low in lows.items()}
    changed = 0
    with transaction.atomic():
        _lock_in_id_order(Item.objects.filter(functools.reduce(operator.or_, below.values()), study=study))
        for split, low in lows.items():
            changed += Item.objects.filter(below[split], study=study).update(n_target=low)
    return changed


def _lock_in_id_order(items) -> None:
    """Lock these items' rows in id order before they are updated (PostgreSQL; every split's at once), as
    every other writer of several items does (judgments.sql.items_lock): an UPDATE alone locks rows in
    whatever order its plan reads them, and could wait on an answer batch that waits on it."""
    if connection.vendor != "postgresql":
        return
    query, params = items.order_by("pk").select_for_update(no_key=True).values("pk").query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM ({query}) AS locked", params)
