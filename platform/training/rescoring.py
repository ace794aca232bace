"""Re-scoring a candidate pool as the models change (docs/adaptive.md): after each retrain, the inactive
candidates of a study with a pool get fresh Item.score values from the configured sampler
(metric.sampling), which judgments.pool draws from. Assignment never waits on it: until the first scores
exist the pool is drawn uniformly, later draws use whatever scores are stored, and the scores are written in
short per-batch transactions that skip candidates a refill holds (both sides use SKIP LOCKED).

The committee, all from what training keeps anyway:
- the study's baselines (training.baselines), their distances on the candidates' images, cached per item
  (a candidate's images never change, so each is computed once);
- each backbone's current trained lin heads, applied to the candidates' cached trunk statistics
  (training.features.FeatureCache: a candidate's statistics are computed once, later rescorings are one
  dot product per head).
No bootstrap ensemble of heads is trained by the platform yet; when one is, its heads join the committee.

`uncertainty` reads each head's predicted P(a human judges p1 closer) as a logistic of d0 - d1 scaled by
its spread over the candidates (the lin heads are trained for distances, not probabilities).
`info_gain` scores candidates that share a reference with two or more other distorted versions from all
train votes of that reference (a Thurstone scale per reference).
"""

from __future__ import annotations

import logging

import numpy as np
from django.db import transaction
from django.db.models import Count, Sum

from core import storage
from judgments.models import Judgment, Trial
from metric import sampling
from studies.models import Item, Study
from training.features import FeatureCache, baseline_distances
from training.models import ModelVersion

logger = logging.getLogger(__name__)
FIELDS = ("id", "index", "ref_image", "p0_image", "p1_image")


def _candidates(study: Study) -> list[dict]:
    return list(
        Item.objects.filter(study=study, role=Item.Role.TEST, split=Item.Split.TRAIN, active=False)
        .order_by("index")
        .values(*FIELDS)
    )


def _baseline_distances(study: Study, names: list[str], items: list[dict]) -> list[tuple]:
    """(d0, d1) per baseline over `items`, computed once per item and kept in
    features/<study>/baselines.npz in the media storage (training.features.baseline_distances)."""
    return baseline_distances(study.pk, study.kind, names, items)


def _head_distances(study: Study, items: list[dict]) -> list[tuple]:
    """(d0, d1) per backbone's current trained lin heads over `items` (cached trunk statistics)."""
    from training.services import StudyBackbone

    out = []
    for spec in study.collection["training"]["backbones"]:
        backbone = StudyBackbone(study, spec)
        version = (
            ModelVersion.objects.filter(
                study=study,
                backbone=backbone.net,
                weights=backbone.used,
                variant="lin",
                status=ModelVersion.Status.READY,
            )
            .order_by("-finished_at")
            .first()
        )
        if version is None or not version.heads_path:
            continue
        model = backbone.model()
        model.load_heads(storage.local_copy(version.heads_path, immutable=True))  # versioned name
        w = model.heads.flat_weights().detach().cpu().numpy().astype(np.float64)
        s0, s1 = FeatureCache(study.pk, model).stats(items, kind=study.kind)
        out.append((s0.astype(np.float64) @ w, s1.astype(np.float64) @ w))
    return out


def _p_closer_p1(d0: np.ndarray, d1: np.ndarray) -> np.ndarray:
    """A head's P(a human judges p1 closer): logistic of (d0 - d1) over its spread on the candidates."""
    diff = d0 - d1
    scale = float(np.std(diff)) or 1.0
    return 1.0 / (1.0 + np.exp(-diff / scale))


def _info_gain(study: Study, items: list[dict]) -> np.ndarray:
    """info_gain scores of `items` from every train item of the same references and their votes."""
    group_of: dict = {}
    trains = list(
        Item.objects.filter(study=study, role=Item.Role.TEST, split=Item.Split.TRAIN).values(*FIELDS)
    )
    votes = {
        item_id: (k or 0, n)
        for item_id, k, n in Judgment.objects.filter(
            item__study=study, item__split=Item.Split.TRAIN, kind=Trial.Kind.TEST, assignment__excluded=False
        )
        .order_by()
        .values_list("item_id")
        .annotate(k=Sum("choice"), n=Count("pk"))
        .values_list("item_id", "k", "n")
    }
    members: dict = {}
    group, a, b, k, n = [], [], [], [], []
    for it in trains:
        g = group_of.setdefault(it["ref_image"], len(group_of))
        ids = members.setdefault(g, {})
        group.append(g)
        a.append(ids.setdefault(it["p0_image"], len(ids)))
        b.append(ids.setdefault(it["p1_image"], len(ids)))
        k_i, n_i = votes.get(it["id"], (0, 0))
        k.append(k_i)
        n.append(n_i)
    scores = sampling.info_gain_scores(
        np.array(group), np.array(a), np.array(b), np.array(k, dtype=float), np.array(n, dtype=float)
    )
    by_id = {it["id"]: s for it, s in zip(trains, scores.tolist(), strict=True)}
    return np.array([by_id[it["id"]] for it in items])


def candidates_rescore(*, study: Study) -> dict:
    """Refresh Item.score for a pool's inactive candidates with the configured sampler; returns a summary.
    Nothing to do for a study without a pool, with the uniform sampler, or with no candidate left."""
    sampler = study.collection["sampling"]["sampler"]
    if study.train_budget is None or sampler == "uniform":
        return {"study": str(study.pk), "status": "skipped", "scored": 0}
    items = _candidates(study)
    if not items:
        return {"study": str(study.pk), "status": "done", "scored": 0}
    if sampler == "info_gain":
        scores = _info_gain(study, items)
        committee = 0
    else:
        heads = _head_distances(study, items)
        members = (
            heads
            if sampler == "uncertainty"
            else heads + _baseline_distances(study, study.collection["training"]["baselines"], items)
        )
        committee = len(members)
        if not members:
            return {"study": str(study.pk), "status": "no committee yet", "scored": 0}
        if sampler == "uncertainty":
            scores = sampling.uncertainty_scores(np.stack([_p_closer_p1(d0, d1) for d0, d1 in members]))
        else:
            d0 = np.stack([d0 for d0, _ in members])
            d1 = np.stack([d1 for _, d1 in members])
            scores = sampling.disagreement_scores(d0, d1)
    scored = _scores_write(study, {it["id"]: float(s) for it, s in zip(items, scores.tolist(), strict=True)})
    logger.info(
        "study %s: rescored %d candidates (%s, committee of %d)", study.pk, scored, sampler, committee
    )
    return {"study": str(study.pk), "status": "done", "scored": scored, "committee": committee}


def _scores_write(study: Study, scores: dict, batch: int = 500) -> int:
    """Store the scores, one short transaction per batch that skips (and leaves unscored) the candidates a
    refill holds or has released meanwhile, so a start's refill never waits on a rescoring (judgments.pool
    reads candidates FOR UPDATE SKIP LOCKED in turn). Returns how many were written."""
    ids, written = list(scores), 0
    for at in range(0, len(ids), batch):
        with transaction.atomic():
            free = list(
                Item.objects.filter(pk__in=ids[at : at + batch], active=False)
                .order_by("pk")  # Item's default ordering joins (and would lock) the study row
                .select_for_update(skip_locked=True)
                .values_list("pk", flat=True)
            )
            Item.objects.bulk_update([Item(pk=pk, score=scores[pk]) for pk in free], ["score"])
        written += len(free)
    return written
