"""Candidate pools (docs/adaptive.md): an engine study built with sampling.pool_factor > 1 holds that many
times its budgeted train items, all inactive (Study.train_budget: the engine's normal train count). The
assignment engine serves active items only; when a start finds its worker's free window low, this module
releases more candidates, drawn by metric.sampling.draw from the scores the rescoring job keeps
(Item.score) mixed with a uniform stream at sampling.uniform_share. Each released item keeps the
probability it was drawn with (propensity), the sampler that drew it (sampler_version) and its place in
the study's draw order (draw: 1, 2, ... across releases), so estimates can be reweighted (the Des Raj
estimator, docs/sampling.md). Never beyond the budget. The val split is never a candidate: built at its
normal size, all active, propensity 1.

Before the first rescoring no candidate has a score: the draw is then uniform and says so
(sampler_version "uniform@1" whatever the configured sampler).

Concurrency: a refill runs inside the start's transaction under a per-study lock (pg_advisory_xact_lock
on PostgreSQL; SQLite's IMMEDIATE transaction already serialises writers), so concurrent starts never
release past the budget; starts that find enough free items never take the lock. A refill reads the
candidates FOR UPDATE SKIP LOCKED and the rescoring writes scores in short per-batch transactions that skip
rows a refill holds, so neither waits on the other (a candidate a rescoring batch holds sits out that one
draw; the propensities are those of the draw actually made, among the candidates it saw).
"""

from __future__ import annotations

import hashlib
import logging

from django.db import connection
from django.db.models import Count, Max, Q

from studies.models import Item, Study

logger = logging.getLogger(__name__)

UNIFORM = "uniform@1"  # metric.sampling.sampler_version("uniform"), without importing torch for it
WINDOW_HITS = 2  # a refill tops a worker's free window up to this many HITs' worth of items


def study_lock(study_id, purpose: str) -> None:
    """Serialise `purpose` per study until this transaction ends (PostgreSQL advisory lock; SQLite's
    IMMEDIATE transactions are serialised already)."""
    if connection.vendor != "postgresql":
        return
    key = int.from_bytes(hashlib.sha256(f"{purpose}:{study_id}".encode()).digest()[:8], "big", signed=True)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])


def _train_tests(study: Study):
    return Item.objects.filter(study=study, role=Item.Role.TEST, split=Item.Split.TRAIN)


def pool_refill(*, study: Study, config: dict, free) -> int:
    """Release candidates when the train items of `free` (the starting worker's queue:
    judgments.assignments._window) are fewer than WINDOW_HITS HITs' worth, up to the study's budget;
    returns how many were released. Call inside the start's transaction, before leasing."""
    want = WINDOW_HITS * config["hit_size"]
    free = free.filter(split=Item.Split.TRAIN)
    if free[:want].count() >= want:
        return 0
    study_lock(study.pk, "pool")
    # counted again under the lock: a start that held it before may have released items for this one too
    released = _train_tests(study).filter(active=True).count()
    n = min(want - free[:want].count(), study.train_budget - released)
    if n <= 0:
        return 0
    return _release(study=study, config=config, n=n)


def _release(*, study: Study, config: dict, n: int) -> int:
    """Draw n inactive train candidates and activate them with their propensities."""
    import numpy as np

    from metric import sampling  # numpy and scipy (metric's torch parts load lazily)

    # candidates a rescoring batch holds right now are skipped, not waited for (training.rescoring)
    candidates = _train_tests(study).filter(active=False).select_for_update(skip_locked=True)
    rows = list(candidates.order_by("index").values_list("pk", "score"))
    if not rows:
        return 0
    known = [score for _, score in rows if score is not None]
    name = config["sampling"]["sampler"]
    if known and name != "uniform":
        fill = float(np.median(known))  # a candidate the last rescoring missed ranks mid-pack
        scores = np.array([fill if score is None else score for _, score in rows], dtype=np.float64)
        share, version = float(config["sampling"]["uniform_share"]), sampling.sampler_version(name)
    else:  # no scores yet (before the first retrain), or the uniform sampler: a uniform draw
        scores, share, version = np.ones(len(rows)), 1.0, UNIFORM
    picks, propensities = sampling.draw(scores, n, uniform_share=share, rng=np.random.default_rng())
    last = _train_tests(study).aggregate(last=Max("draw"))["last"] or 0  # under the pool lock
    chosen = []
    for t, (index, q) in enumerate(zip(picks.tolist(), propensities.tolist(), strict=True), start=1):
        chosen.append(
            Item(pk=rows[index][0], active=True, propensity=float(q), sampler_version=version, draw=last + t)
        )
    Item.objects.bulk_update(chosen, ["active", "propensity", "sampler_version", "draw"], batch_size=500)
    logger.info("study %s: released %d candidates (%s)", study.pk, len(chosen), version)
    return len(chosen)


def item_draw(sampler_version: str, propensity: float | None) -> tuple[str, float]:
    """An item's (sampler version, propensity) as exports and the dashboard report them: an item no pool
    drew (a val item, any item of a study without a pool) was served for certain, uniformly."""
    return sampler_version or UNIFORM, 1.0 if propensity is None else propensity


def pool_status(*, study: Study) -> dict | None:
    """A pool's size, released items and budget (None for a study without a pool): the dashboard's."""
    if study.train_budget is None:
        return None
    row = _train_tests(study).aggregate(size=Count("*"), released=Count("active", filter=Q(active=True)))
    return {**row, "budget": study.train_budget}
