"""Continuous training: retrain LPIPS heads on a study's judgments and evaluate every metric against them.

Triggers (debounced): `judgments_added` runs after each committed test judgment; when the study's
accepted judgments have grown by `training.every` since the last model, it marks the study queued (one
conditional UPDATE, so the N-th judgment enqueues exactly one job) and sends `training.study_retrain`.
A periodic task (`training.retrain_due`) catches anything missed. One job per study runs at a time (a
claim on TrainingState); a job that finds the study claimed marks it queued and retries (below).

The claim recovers from a killed worker: the running job refreshes a heartbeat (`TrainingState.heartbeat_at`,
from a thread, every settings.PERCEPTLAB_TRAINING_HEARTBEAT_S); a claim whose heartbeat is older than
settings.PERCEPTLAB_TRAINING_STALE_S is stale, and the next job (the broker redelivers the killed one's
unacknowledged message: acks_late, reject_on_worker_lost) takes it over. A job that finds a live claim runs
nothing and answers "busy" with the seconds to wait; the task retries then, so it runs once the other job
is done or has died (no double run, no study left queued for good).

Backbones: each configured {net, weights, seed?} is resolved at every run (metric.backbones.resolve_weights:
"auto" is ImageNet when torchvision's weights file is present or can be fetched, k-means otherwise). A k-means
trunk is initialised on a seeded corpus drawn with metric.backbones.kmeans_corpus from all the study's train
test items (judged or not: the corpus, so the trunk and the feature cache, stay the same across retrains)
and stored next to the feature cache (features/<study>/ in the media storage, core.storage).
ModelVersion.weights holds what ran; ModelVersion.backbone_info what was asked, what ran, why, the backbone
source and the corpus. A trunk that is not torchvision's ImageNet one ships with the model
(ModelVersion.trunk_path, content-addressed).

A job trains lin heads on the train split for each configured backbone (features from the cache), writes
the heads in the lpips file format to a temporary file and renames it into place, evaluates on the val
split (2AFC per category with bootstrap CIs and the human ceiling; JND mAP for JND studies), and only
then marks the ModelVersion ready, in one transaction with its Evaluation rows. A crash or kill leaves
the previous ready model current; the half-done version is marked failed by the next run.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import threading
import uuid
from collections import Counter, defaultdict
from datetime import timedelta

import numpy as np
import torch
from django.conf import settings
from django.db import transaction
from django.db.models import F, Max, Q
from django.utils import timezone

from core import storage
from core.exceptions import ApplicationError
from judgments.models import Judgment, Trial
from judgments.pool import item_draw
from metric.backbones import build_backbone, corpus_digest, kmeans_corpus, resolve_weights
from metric.data import JNDData, TwoAFCData
from metric.errors import MetricError
from metric.lpips import LPIPS
from metric.scoring import bootstrap_ci, human_ceiling_plugin, jnd_average_precision, two_afc_per_item
from metric.train import TrainConfig, build_model, train_lin_fast
from studies.models import Item, Study
from training.features import FeatureCache, baseline_distances, media_patch
from training.models import Evaluation, ModelVersion, TrainingState
from training.triggers import (  # noqa: F401  (re-exported: the trigger API)
    _state,
    accepted_judgments,
    judgments_added,
    retrain_due,
    training_request,
)

logger = logging.getLogger(__name__)


# --- data -----------------------------------------------------------------------------------------------
def _votes(study: Study) -> dict:
    """item id -> (positive votes, counted votes); counted = test judgments of non-excluded assignments."""
    votes: dict = defaultdict(lambda: [0, 0])
    rows = Judgment.objects.filter(
        item__study=study, kind=Trial.Kind.TEST, assignment__excluded=False
    ).values_list("item_id", "choice")
    for item_id, choice in rows:
        votes[item_id][0] += choice
        votes[item_id][1] += 1
    return votes


def study_items(study: Study, split: str, votes: dict) -> list[dict]:
    items = Item.objects.filter(study=study, role=Item.Role.TEST, split=split).order_by("index")
    out = []
    for it in items.values("id", "index", "category", "ref_image", "p0_image", "p1_image"):
        k, n = votes.get(it["id"], (0, 0))
        if n:
            out.append({**it, "k": k, "n": n})
    return out


def dataset_from_items(study: Study, items: list[dict]):
    """TwoAFCData / JNDData with images (for baselines) from media storage."""

    def stack(field):
        return np.stack([media_patch(it[field]) for it in items])

    p = np.array([it["k"] / it["n"] for it in items], dtype=np.float64)
    n = np.array([it["n"] for it in items], dtype=np.float64)
    cats = [it["category"] for it in items]
    ids = [str(it["index"]) for it in items]
    if study.kind == "2afc":
        return TwoAFCData(stack("ref_image"), stack("p0_image"), stack("p1_image"), p, cats, n, ids)
    return JNDData(stack("p0_image"), stack("p1_image"), p, cats, n, ids)


def backbone_model(spec: dict) -> LPIPS:
    """The frozen trunk for a configured backbone, heads initialised as the training recipe does (weights
    imagenet or random; a study's backbone goes through `study_backbone`)."""
    cfg = TrainConfig(net=spec["net"], backbone_weights=spec["weights"], seed=int(spec.get("seed", 0)))
    return build_model(cfg)


# --- backbones: what runs, and why ----------------------------------------------------------------------
_AS_CONFIGURED = {
    "imagenet": "imagenet: as configured (torchvision's ImageNet weights)",
    "kmeans": "kmeans: as configured (a k-means trunk drawn from this study's train patches)",
    "random": "random: as configured (torchvision's seeded random initialisation, the paper's control)",
}


def kmeans_patches() -> int:
    """Patches in a study's k-means corpus (settings.PERCEPTLAB_KMEANS_PATCHES, default 512)."""
    return settings.PERCEPTLAB_KMEANS_PATCHES


def trunk_cache_dir(study: Study) -> str:
    """Where a study's k-means trunks are stored: next to its feature cache (media-relative)."""
    return f"features/{study.pk}"


def study_kmeans_corpus(study: Study, *, seed: int, n: int | None = None) -> tuple[torch.Tensor, dict]:
    """The study's k-means corpus: ``kmeans_corpus(ref, p0, p1, n=n, seed=seed)`` over all its train test
    items (judged or not; JND: p0, p1), in item order. Only the n drawn patches are read from storage:
    the same seeded draw is made over the pool's indices first, and kmeans_corpus then keeps them all, in
    order, so the corpus is exactly the one of the whole arrays. Returns (corpus, its record)."""
    fields = ("ref_image", "p0_image", "p1_image") if study.kind == "2afc" else ("p0_image", "p1_image")
    items = list(
        Item.objects.filter(study=study, role=Item.Role.TEST, split="train").order_by("index").values(*fields)
    )
    if not items:
        raise MetricError(
            "a k-means trunk is drawn from the study's train patches, and the study has no train items; "
            "use weights 'imagenet' or 'random' for this backbone"
        )
    n = max(1, int(n or kmeans_patches()))
    pick = np.sort(np.random.default_rng(seed).permutation(len(items) * len(fields))[:n])
    patches = np.stack([media_patch(items[j % len(items)][fields[j // len(items)]]) for j in pick])
    corpus = kmeans_corpus(patches, n=len(patches), seed=seed)
    record = {
        "seed": seed,
        "patches": len(patches),
        "digest": corpus_digest(corpus),  # the trunk cache key of metric.backbones.kmeans_features
        "split": "train",
        "items": len(items),
        "images": [f.removesuffix("_image") for f in fields],
    }
    return corpus, record


class StudyBackbone:
    """A configured backbone of a study, resolved for this run: ``used`` (imagenet / kmeans / random) and
    ``info`` (requested, used, reason, source, corpus). ``model(variant)`` builds the LPIPS to train."""

    def __init__(self, study: Study, spec: dict):
        self.study, self.spec = study, spec
        self.net, self.requested = spec["net"], spec["weights"]
        self.seed = int(spec.get("seed", 0))
        self.used, reason = resolve_weights(self.net, self.requested)
        self.info: dict = {
            "requested": self.requested,
            "used": self.used,
            "reason": reason or _AS_CONFIGURED.get(self.used, self.used),
        }
        self.corpus = None
        if self.used == "kmeans":
            self.corpus, self.info["corpus"] = study_kmeans_corpus(study, seed=self.seed)
            cached = f"{trunk_cache_dir(study)}/{self._trunk_name(self.info['corpus']['digest'])}"
            self.info["trunk_cached"] = storage.exists(cached)  # reused from an earlier run

    @property
    def label(self) -> str:
        return f"{self.net}-{self.used}"

    def _trunk_name(self, digest: str) -> str:
        return f"{self.net}-seed{self.seed}-{digest}.pth"  # metric.backbones.kmeans_features' cache name

    def model(self, variant: str = "lin", **cfg) -> LPIPS:
        config = TrainConfig(net=self.net, variant=variant, backbone_weights=self.used, seed=self.seed, **cfg)
        if self.used != "kmeans" or variant == "scratch":
            model = build_model(config)
        else:
            folder, keep = trunk_cache_dir(self.study), self._trunk_name(self.info["corpus"]["digest"])
            with contextlib.suppress(FileNotFoundError):  # metric reads it from its cache dir, or draws it
                storage.local_copy(f"{folder}/{keep}", immutable=True)  # named by the corpus digest
            backbone = build_backbone(
                self.net,
                "kmeans",
                seed=self.seed,
                tune=variant != "lin",
                kmeans_corpus=self.corpus,
                cache_dir=storage.local_path(folder),
            )
            model = build_model(config, backbone=backbone)
            if not storage.is_local() and not storage.exists(f"{folder}/{keep}"):  # drawn now: store it
                storage.save_file(f"{folder}/{keep}", storage.local_path(folder) / keep)
            for old in storage.listdir(folder):
                if old.startswith(f"{self.net}-seed{self.seed}-") and old.endswith(".pth") and old != keep:
                    storage.delete(f"{folder}/{old}")  # an earlier corpus's trunk
        self.info["source"] = model.backbone.source
        return model


# --- scoring from statistics ----------------------------------------------------------------------------
def _scores_2afc(d0: np.ndarray, d1: np.ndarray, items: list[dict], n_boot: int, seed: int = 0) -> dict:
    p = np.array([it["k"] / it["n"] for it in items])
    per_item = two_afc_per_item(d0, d1, p)
    return _by_category(per_item, items, n_boot, seed)


def _by_category(per_item: np.ndarray, items: list[dict], n_boot: int, seed: int) -> dict:
    cats = sorted({it["category"] for it in items})
    out = {}
    for c in cats:
        idx = np.array([i for i, it in enumerate(items) if it["category"] == c])
        scores = per_item[idx]
        lo, hi = (
            bootstrap_ci(lambda s_idx, s=scores: s[s_idx].mean(), len(scores), n_boot=n_boot, seed=seed)
            if len(scores) > 1
            else (None, None)
        )
        out[c] = (float(scores.mean()), lo, hi, len(scores))
    lo, hi = (
        bootstrap_ci(lambda s_idx: per_item[s_idx].mean(), len(per_item), n_boot=n_boot, seed=seed)
        if len(per_item) > 1
        else (None, None)
    )
    out["all"] = (float(np.mean([v[0] for v in out.values()])), lo, hi, len(per_item))
    return out


def _jnd_map(d: np.ndarray, items: list[dict], n_boot: int, seed: int = 0) -> dict:
    same = np.array([it["k"] / it["n"] for it in items])
    out = {}
    rng = np.random.default_rng(seed)
    for c in sorted({it["category"] for it in items}) + ["all"]:
        idx = np.array([i for i, it in enumerate(items) if c == "all" or it["category"] == c])
        score = jnd_average_precision(d[idx], same[idx])
        boots = []
        for _ in range(min(n_boot, 200)):
            pick = rng.integers(0, len(idx), len(idx))
            if same[idx][pick].sum() > 0:
                boots.append(jnd_average_precision(d[idx][pick], same[idx][pick]))
        lo, hi = (
            (float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))) if boots else (None, None)
        )
        out[c] = (score, lo, hi, len(idx))
    return out


# --- the job --------------------------------------------------------------------------------------------
def _stale_before():
    return timezone.now() - timedelta(seconds=settings.PERCEPTLAB_TRAINING_STALE_S)


def _claim(study_id, claim: uuid.UUID) -> bool:
    """Take the study's claim if it is free or stale (its heartbeat, or without one its start, is older
    than the stale timeout): one conditional UPDATE, so two jobs never both win."""
    now, stale = timezone.now(), _stale_before()
    return bool(
        TrainingState.objects.filter(study_id=study_id)
        .filter(
            Q(running_since__isnull=True)
            | Q(heartbeat_at__lt=stale)
            | Q(heartbeat_at__isnull=True, running_since__lt=stale)
        )
        .update(running_since=now, heartbeat_at=now, claim=claim, queued=False)
    )


class _Heartbeat:
    """Refreshes the claim's heartbeat from a thread while the job runs (training steps report no
    progress for minutes). Stops when the job ends; notices, and logs, a claim taken over meanwhile."""

    def __init__(self, study_id, claim: uuid.UUID):
        self.study_id, self.claim = study_id, claim
        self.stop = threading.Event()
        self.lost = False
        self.thread = threading.Thread(target=self._run, name=f"training-heartbeat-{study_id}", daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()

    def _run(self) -> None:
        from django.db import connection

        try:
            while not self.stop.wait(settings.PERCEPTLAB_TRAINING_HEARTBEAT_S):
                try:
                    beat = TrainingState.objects.filter(study_id=self.study_id, claim=self.claim).update(
                        heartbeat_at=timezone.now()
                    )
                except Exception:  # the database is briefly away: the next beat tries again
                    logger.warning("study %s: training heartbeat failed", self.study_id, exc_info=True)
                    continue
                if not beat and not self.lost:
                    self.lost = True
                    logger.warning(
                        "study %s: the training claim was taken over (this job looked dead)", self.study_id
                    )
        finally:
            connection.close()


def _save_heads(model: LPIPS, rel: str) -> tuple[str, str]:
    with storage.writing(rel) as tmp:
        model.save_heads(tmp)
        digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    return rel, digest


def _save_trunk(model: LPIPS, study: Study) -> tuple[str, str]:
    """The trunk's features state dict (loads with backbone_weights=<file>), content-addressed under
    models/<study>/ so the versions that ran the same trunk share one file."""
    buffer = io.BytesIO()
    state = {k: v.detach().cpu().contiguous() for k, v in model.backbone.features.state_dict().items()}
    torch.save(state, buffer)
    data = buffer.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    rel = f"models/{study.pk}/trunk-{model.net}-{digest[:16]}.pth"
    try:
        stored = hashlib.sha256(storage.read_bytes(rel)).hexdigest()
    except FileNotFoundError:
        stored = None
    if stored != digest:
        storage.save_bytes(rel, data)
    return rel, digest


def study_retrain(*, study: Study, progress=None) -> dict:
    """Retrain and evaluate one study (see the module docstring). Returns a summary."""
    _state(study.pk)
    claim = uuid.uuid4()
    if not _claim(study.pk, claim):
        state = TrainingState.objects.get(study_id=study.pk)
        beat = state.heartbeat_at or state.running_since or timezone.now()
        retry_in = max(
            1.0, settings.PERCEPTLAB_TRAINING_STALE_S - (timezone.now() - beat).total_seconds() + 1.0
        )
        retry_in = min(
            retry_in, max(1.0, settings.PERCEPTLAB_TRAINING_HEARTBEAT_S * 2)
        )  # soon after a job ends
        logger.info("study %s: a training job holds the claim; trying again in %.0f s", study.pk, retry_in)
        TrainingState.objects.filter(study_id=study.pk).update(queued=True, queued_at=timezone.now())
        return {"study": str(study.pk), "status": "busy", "retry_in": retry_in}
    # a version left running by a killed job is failed, never current
    ModelVersion.objects.filter(study=study, status=ModelVersion.Status.RUNNING).update(
        status=ModelVersion.Status.FAILED, error="the job was interrupted"
    )
    with transaction.atomic():  # take the on-demand variants this job will train
        state = TrainingState.objects.select_for_update().get(study_id=study.pk)
        variants, state.pending_variants = list(state.pending_variants), []
        state.save(update_fields=["pending_variants"])
    mine = TrainingState.objects.filter(
        study_id=study.pk, claim=claim
    )  # a claim taken over is not ours to clear
    released = {"running_since": None, "heartbeat_at": None, "claim": None}
    try:
        with _Heartbeat(study.pk, claim):
            summary = _retrain(study, progress, variants=variants)
        mine.update(
            **released,
            last_judgments=summary["n_judgments"],
            last_run_at=timezone.now(),
            last_error="",
            runs=F("runs") + 1,
        )
    except BaseException as exc:
        mine.update(
            **released, last_error=repr(exc)[:2000], pending_variants=variants
        )  # asked again next time
        ModelVersion.objects.filter(study=study, status=ModelVersion.Status.RUNNING).update(
            status=ModelVersion.Status.FAILED, error=repr(exc)[:2000]
        )
        raise
    judgments_added(study_id=study.pk)  # more arrived while we trained?
    return summary


def _evaluation_adder(study: Study, run: uuid.UUID, n_judgments: int, rows: list[Evaluation]):
    """add(metric, kind, measure, split, scores, version=None): appends to ``rows`` one Evaluation of the
    run per category of ``scores`` ({category: (score, ci_low, ci_high, n_items)})."""

    def add(metric, kind, measure, split, scores, version=None):
        for cat, (score, lo, hi, n) in scores.items():
            rows.append(
                Evaluation(
                    study=study,
                    model_version=version,
                    run=run,
                    metric=metric,
                    kind=kind,
                    measure=measure,
                    split=split,
                    category=cat,
                    score=score,
                    ci_low=lo,
                    ci_high=hi,
                    n_items=n,
                    n_judgments=n_judgments,
                )
            )

    return add


def _publish(versions: list[ModelVersion], rows: list[Evaluation]) -> None:
    """The new models become ready (current) together with the run's evaluations, in one transaction."""
    with transaction.atomic():
        for version in versions:
            version.status = ModelVersion.Status.READY
            version.finished_at = timezone.now()
            version.save()
        Evaluation.objects.bulk_create(rows)


def _retrain(study: Study, progress, variants: list[str] = ()) -> dict:
    config = study.collection["training"]
    votes = _votes(study)
    n_judgments = sum(n for _, n in votes.values())
    train_items = study_items(study, "train", votes) if study.kind == "2afc" else []
    val_items = study_items(study, "val", votes)
    if not val_items:
        raise ApplicationError("no judged val items yet: nothing to evaluate against")
    run = uuid.uuid4()
    rows: list[Evaluation] = []
    versions: list[ModelVersion] = []
    notes: list[str] = []
    add = _evaluation_adder(study, run, n_judgments, rows)
    _evaluate_on_images(study, config, val_items, add)
    backbones: list[dict] = []
    for spec in config["backbones"]:  # deep metrics from cached statistics
        versions += _evaluate_backbone(
            study, spec, config, train_items, val_items, variants, progress, add, notes, backbones
        )
    _publish(versions, rows)
    logger.info(
        "study %s: evaluated %d metrics on %d val items (%d judgments); trained %d model(s)",
        study.pk,
        len({r.metric for r in rows}),
        len(val_items),
        n_judgments,
        len(versions),
    )
    return {
        "study": str(study.pk),
        "status": "done",
        "run": str(run),
        "n_judgments": n_judgments,
        "models": [str(v) for v in versions],
        "metrics": sorted({r.metric for r in rows}),
        "notes": notes,
        "backbones": backbones,
    }


def _evaluate_on_images(study: Study, config: dict, val_items: list[dict], add) -> None:
    """The human ceiling (plug-in, as the paper) and the baselines on the val images (their distances
    cached per item: training.features.baseline_distances; the images are read for new items only)."""
    n_boot = int(config["n_boot"])
    if study.kind == "2afc":
        p = np.array([it["k"] / it["n"] for it in val_items], dtype=np.float64)
        ceil = {
            c: human_ceiling_plugin(p[[i for i, it in enumerate(val_items) if it["category"] == c]])
            for c in sorted({it["category"] for it in val_items})
        }
        ceil["all"] = float(np.mean(list(ceil.values())))
        add(
            "human",
            Evaluation.Kind.HUMAN,
            "ceiling",
            "val",
            {c: (v, None, None, len(val_items)) for c, v in ceil.items()},
        )
    names = list(config["baselines"])
    for name, (d0, d1) in zip(names, baseline_distances(study.pk, study.kind, names, val_items), strict=True):
        if study.kind == "2afc":
            add(name, Evaluation.Kind.BASELINE, "2afc", "val", _scores_2afc(d0, d1, val_items, n_boot))
        else:
            add(name, Evaluation.Kind.BASELINE, "jnd_map", "val", _jnd_map(d0, val_items, n_boot))


def _evaluate_backbone(
    study: Study,
    spec: dict,
    config: dict,
    train_items: list[dict],
    val_items: list[dict],
    variants,
    progress,
    add,
    notes: list[str],
    backbones: list[dict],
) -> list[ModelVersion]:
    """One backbone: resolved (what runs, and why), its unweighted and official heads evaluated, its lin
    heads trained (and the on-demand variants); returns the model versions trained (still running until
    _retrain commits them). A backbone that cannot run is a note on the run."""
    try:
        backbone = StudyBackbone(study, spec)
        model = backbone.model()
    except MetricError as exc:
        notes.append(f"{spec['net']}-{spec['weights']}: {exc}")
        logger.warning("study %s: backbone %s unavailable: %s", study.pk, spec, exc)
        return []
    label = backbone.label
    backbones.append({"net": spec["net"], **backbone.info})
    logger.info("study %s: backbone %s: %s", study.pk, label, backbone.info["reason"])
    cache = FeatureCache(study.pk, model)
    v0, v1 = cache.stats(val_items, kind=study.kind, progress=progress)
    # metric name -> (kind, flat head weights); only the trained heads' rows point at the model version
    heads: dict[str, tuple[str, np.ndarray]] = {
        f"{label} unweighted": (Evaluation.Kind.UNWEIGHTED, np.ones(v0.shape[1], np.float32))
    }
    if config["official_lpips"] and backbone.used == "imagenet":
        official = LPIPS(net=spec["net"], backbone=model.backbone, head_weights="official")
        heads[f"lpips-{spec['net']} v0.1 (official)"] = (
            Evaluation.Kind.OFFICIAL,
            official.heads.flat_weights().detach().numpy(),
        )
    versions: list[ModelVersion] = []
    version = None
    if train_items:
        version = _train_lin(study, backbone, config, model, cache, train_items, progress, heads)
        versions.append(version)
    for variant in variants if train_items and study.kind == "2afc" else ():
        versions.append(_train_deep_variant(study, backbone, variant, config, train_items, val_items, add))
    n_boot = int(config["n_boot"])
    for name, (kind, weights) in heads.items():
        d0, d1 = v0 @ weights, v1 @ weights
        mv = version if kind == Evaluation.Kind.TRAINED else None
        if study.kind == "2afc":
            add(
                name,
                kind,
                "2afc",
                "val",
                _scores_2afc(d0.astype(np.float64), d1.astype(np.float64), val_items, n_boot),
                mv,
            )
        else:
            add(name, kind, "jnd_map", "val", _jnd_map(d0.astype(np.float64), val_items, n_boot), mv)
    return versions


def _next_model_version(
    study: Study, backbone: StudyBackbone, variant: str, train_items: list[dict]
) -> ModelVersion:
    """A new (running) model version of this backbone (as it ran) and variant, numbered after the study's
    last one."""
    last = (
        ModelVersion.objects.filter(
            study=study, backbone=backbone.net, weights=backbone.used, variant=variant
        ).aggregate(v=Max("version"))["v"]
        or 0
    )
    return ModelVersion.objects.create(
        study=study,
        backbone=backbone.net,
        weights=backbone.used,
        variant=variant,
        version=last + 1,
        n_train_items=len(train_items),
        n_train_judgments=sum(it["n"] for it in train_items),
        backbone_info=dict(backbone.info),
    )


def _lin_train_config(backbone: StudyBackbone, config: dict, n_train_items: int) -> TrainConfig:
    """The lin heads' training config: the study's epochs, raised for a small study (few batches of 50
    items an epoch) so that training still runs about ``min_steps`` steps."""
    steps_per_epoch = -(-n_train_items // 50)
    epochs = max(int(config["epochs"]), -(-int(config["min_steps"]) // (2 * steps_per_epoch)))
    return TrainConfig(
        net=backbone.net,
        backbone_weights=backbone.used,
        seed=backbone.seed,
        epochs=epochs,
        epochs_decay=max(int(config["epochs_decay"]), epochs),
        lr=float(config["lr"]),
    )


def _trained_samplers(study: Study, train_items: list[dict]) -> dict:
    """{"sampler": the sampler that drew most of `train_items`, "samplers": {sampler version: items}}. Read
    from the items (judgments.pool.item_draw), not the configured sampler: a study without a pool, and a
    pool's rounds before the first rescoring, are drawn uniformly whatever the setting says."""
    ids = {it["id"] for it in train_items}
    rows = Item.objects.filter(study=study, role=Item.Role.TEST, split=Item.Split.TRAIN).order_by()
    mix = Counter(
        item_draw(version, propensity)[0]
        for pk, version, propensity in rows.values_list("pk", "sampler_version", "propensity")
        if pk in ids
    )
    top = mix.most_common(1)[0][0] if mix else item_draw("", None)[0]
    return {"sampler": top.split("@")[0], "samplers": dict(sorted(mix.items()))}


def _train_lin(
    study: Study,
    backbone: StudyBackbone,
    config: dict,
    model: LPIPS,
    cache: FeatureCache,
    train_items: list[dict],
    progress,
    heads: dict,
) -> ModelVersion:
    """Fit the lin heads on the cached train statistics and save them as a new (running) model version;
    adds the initial and the trained heads to `heads` for evaluation. A trunk other than ImageNet's ships
    with the heads."""
    label = backbone.label
    t0, t1 = cache.stats(train_items, kind=study.kind, progress=progress)
    version = _next_model_version(study, backbone, "lin", train_items)
    cfg = _lin_train_config(backbone, config, len(train_items))
    heads[f"{label} untrained (init heads)"] = (
        Evaluation.Kind.UNTRAINED,
        model.heads.flat_weights().detach().cpu().numpy().copy(),
    )
    p_train = np.array([it["k"] / it["n"] for it in train_items])
    w, _rank, losses = train_lin_fast(t0, t1, p_train, cfg, w_init=model.heads.flat_weights())
    model.heads.set_flat_weights(w)
    rel, digest = _save_heads(model, f"models/{study.pk}/{label}-lin-v{version.version}.pth")
    version.heads_path, version.heads_sha256 = rel, digest
    if backbone.used != "imagenet":
        version.trunk_path, version.trunk_sha256 = _save_trunk(model, study)
    version.train_info = {
        "losses": [float(x) for x in losses][-5:],
        "feature_device": cache.device,
        "feature_cache": cache.name,
        "computed_features": cache.computed,
        # what drew the train items the heads learnt from: the dashboard's learning curve per sampler
        **_trained_samplers(study, train_items),
    }
    heads[f"trained {label} lin"] = (
        Evaluation.Kind.TRAINED,
        w.detach().cpu().numpy() if torch.is_tensor(w) else np.asarray(w),
    )
    return version


def _train_deep_variant(
    study, backbone: StudyBackbone, variant, config, train_items, val_items, add
) -> ModelVersion:
    """On demand: "tune" (trunk and heads) or "scratch" (random trunk, trained), the reference-style loop
    over images; slow on a CPU. Saved as lpips heads plus the trunk's state dict; evaluated on images."""
    from metric.evaluate import lpips_2afc_distances
    from metric.train import train_heads

    version = _next_model_version(study, backbone, variant, train_items)
    train = {"epochs": int(config["epochs"]), "epochs_decay": int(config["epochs_decay"])}
    model = backbone.model(variant)
    cfg = TrainConfig(
        net=backbone.net,
        variant=variant,
        backbone_weights=backbone.used,
        seed=backbone.seed,
        lr=float(config["lr"]) / 10,
        **train,
    )
    result = train_heads(dataset_from_items(study, train_items), cfg, fast=False, model=model)
    stem = f"models/{study.pk}/{backbone.label}-{variant}-v{version.version}"
    version.heads_path, version.heads_sha256 = _save_heads(result.model, f"{stem}.pth")
    version.trunk_path, version.trunk_sha256 = _save_trunk(result.model, study)
    version.train_info = {
        "losses": [float(x) for x in result.losses][-5:],
        "seconds": result.seconds,
    }
    val = dataset_from_items(study, val_items)
    d0, d1 = lpips_2afc_distances(result.model.eval(), val)
    add(
        f"trained {backbone.label} {variant}",
        Evaluation.Kind.TRAINED,
        "2afc",
        "val",
        _scores_2afc(d0, d1, val_items, int(config["n_boot"])),
        version,
    )
    return version


def current_model(*, study: Study, backbone: str = "alex", weights: str | None = None) -> ModelVersion | None:
    qs = ModelVersion.objects.filter(study=study, backbone=backbone, status=ModelVersion.Status.READY)
    if weights:
        qs = qs.filter(weights=weights)
    return qs.order_by("-finished_at").first()
