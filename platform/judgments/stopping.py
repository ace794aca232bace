"""Adaptive votes (docs/adaptive.md): a study whose judgments_per_item.train is a range [min, max] gives each
train item min judgments, then one more at a time while its Beta posterior leaves the decision that matters
uncertain (metric.sampling.need_more_votes with the study's `stopping` settings), up to max, and only
within the study's train-vote budget (studies.collection.train_vote_budget).

The engine's availability test is ``n_judgments + n_open < n_target``; this module raises n_target, in the
answer's transaction, under the item's row lock (the answer's count update took it), when an accepted
judgment brings the item to its target. The budget check and the raise run under a per-study lock
(judgments.pool.study_lock), so concurrent answers never raise targets past the budget.
"""

from __future__ import annotations

import logging

from django.db.models import Count, F, Sum

from judgments.pool import study_lock
from studies.collection import train_vote_budget, votes_range
from studies.models import Item, Study
from studies.targets import item_targets_sync

logger = logging.getLogger(__name__)


def stopping_on(config: dict) -> bool:
    """Whether the study's train counts are a range (Bayesian stopping)."""
    low, high = votes_range(config, Item.Split.TRAIN)
    return low < high


def vote_budget_left(*, study_id, config: dict, budget_items: int | None = None) -> int:
    """Train judgments the study may still raise targets by: its train-vote budget less the train items'
    targets (every budgeted item is due at least min, released or not)."""
    low, _ = votes_range(config, Item.Split.TRAIN)
    trains = Item.objects.filter(study_id=study_id, role=Item.Role.TEST, split=Item.Split.TRAIN)
    if budget_items is None:
        budget_items = Study.objects.filter(pk=study_id).values_list("train_budget", flat=True).get()
    if budget_items is None:
        budget_items = trains.count()
    extra = trains.filter(n_target__gt=low).aggregate(e=Sum(F("n_target") - low))["e"] or 0
    return train_vote_budget(config, budget_items) - budget_items * low - extra


def item_vote_after_answer(*, item_id, study_id, config: dict) -> bool:
    """After an accepted test judgment on `item_id` (its row locked by this transaction): raise the item's
    target by one when it has reached it, the posterior says another vote is worth it and the budget allows;
    returns whether it did."""
    from metric.sampling import need_more_votes  # numpy / scipy only (metric's torch parts load lazily)

    row = (
        Item.objects.filter(pk=item_id, split=Item.Split.TRAIN)
        .values_list("n_judgments", "n_ones", "n_target")
        .first()
    )
    if row is None:
        return False
    n, k, target = row
    low, high = votes_range(config, Item.Split.TRAIN)
    stopping = config["stopping"]
    if n < target:
        return False
    try:
        more = need_more_votes(
            k,
            n,
            min_votes=low,
            max_votes=high,
            confidence=stopping["confidence"],
            tie_width=stopping["tie_width"],
        )
    except ValueError:  # counts or settings no validation let through (an old config, a hand-edited row):
        # never fail the answer for it; the item just keeps its target
        logger.exception("study %s: stopping rule refused item %s's counts or settings", study_id, item_id)
        return False
    if not more:
        return False
    study_lock(study_id, "votes")
    if vote_budget_left(study_id=study_id, config=config) <= 0:
        return False
    Item.objects.filter(pk=item_id).update(n_target=F("n_target") + 1)
    return True


def item_targets_after_take_back(*, item_ids, config: dict) -> int:
    """Re-run the stopping rule for train items whose counts an exclusion or rejection just lowered (their
    rows locked by the caller's update): a target raised on a vote taken back drops to what the remaining
    votes earn (min; or one more than the accepted votes while undecided), never below the votes accepted
    or leased. Targets are only lowered here; returns how many changed."""
    low, high = votes_range(config, Item.Split.TRAIN)
    if low == high:
        return 0
    from metric.sampling import need_more_votes

    stopping, changed = config["stopping"], 0
    rows = (
        Item.objects.filter(pk__in=item_ids, split=Item.Split.TRAIN, n_target__gt=low)
        .order_by("pk")
        .values_list("pk", "n_judgments", "n_ones", "n_open", "n_target")
    )
    for pk, n, k, n_open, target in rows:
        try:
            more = n >= low and need_more_votes(
                k,
                n,
                min_votes=low,
                max_votes=high,
                confidence=stopping["confidence"],
                tie_width=stopping["tie_width"],
            )
        except ValueError:  # counts or settings the rule refuses: leave the target as it is
            logger.exception("item %s: stopping rule refused its counts after a take-back", pk)
            continue
        due = min(target, max(low, n + n_open, n + 1 if more else 0))
        if due < target:
            changed += Item.objects.filter(pk=pk).update(n_target=due)
    return changed


def item_counts_fill(*, study: Study) -> None:
    """Targets and choice-1 counts of items written without them (a restored archive from before adaptive
    collection): targets from the config, n_ones from the accepted test judgments."""
    from judgments.models import Judgment, Trial

    item_targets_sync(study=study)
    ones = (
        Judgment.objects.filter(item__study=study, kind=Trial.Kind.TEST, choice=1, assignment__excluded=False)
        .order_by()
        .values_list("item_id")
        .annotate(n=Count("pk"))
    )
    for item_id, n in ones.values_list("item_id", "n"):
        Item.objects.filter(pk=item_id).update(n_ones=n)
