"""Writes for studies: creation and stimulus building with the distortion engine."""

from __future__ import annotations

import logging
import shutil

from django.conf import settings
from django.db import transaction

import distortions
from core import storage
from core.exceptions import ApplicationError
from studies.collection import collection_config, new_completion_code
from studies.models import Item, Study
from studies.sources import build_config_check, build_config_check_cnn, engine_build_config, source_photos
from studies.targets import item_targets_sync

logger = logging.getLogger(__name__)

STIMULI_DIR = "stimuli"  # media-relative; content-addressed PNGs shared by all studies


def study_create(
    *, name: str, kind: str, build_config: dict, owner=None, config: dict | None = None, is_demo: bool = False
) -> Study:
    if build_config:  # empty: a study whose items are imported (study_import_items)
        study_build_config_check(kind=kind, build_config=build_config, owner=owner)  # sources, caps, engine
        build_config = {**build_config, "kind": kind}
    else:
        build_config = {}
    config = dict(config or {})
    config.setdefault("completion_code", new_completion_code())
    merged = collection_config(
        kind, config, saving=True
    )  # validates; raises ApplicationError naming the field
    if build_config:
        pool_size_check(build_config=build_config, factor=merged["sampling"]["pool_factor"])
    study = Study(
        name=name,
        kind=kind,
        owner=owner,
        build_config=build_config,
        config=config,
        is_demo=is_demo,
        # an engine study is building from now on (its job is queued): pages and the API show the build, not
        # an empty draft, until the worker reports
        status=Study.Status.BUILDING if build_config else Study.Status.DRAFT,
    )
    study.full_clean()
    study.save()
    return study


def cnn_pool_train(
    *,
    n_models: int = 16,
    seed: int = 0,
    budget: dict | None = None,
    device: str | None = None,
    jobs: int | None = None,
    progress: bool = False,
    on_progress=None,
) -> dict:
    """Train (or resume, or reuse) the CNN-autoencoder pool under settings.CNN_POOL_DIR; returns
    {"pool": path, "models": n, "device": ...}. On a GPU when one is present, else on the CPU."""
    from distortions.cnn.distortion import add_pool_dir
    from distortions.cnn.trainer import Budget, train_pool
    from metric.features import cnn_feature_distance

    try:
        manifest = train_pool(
            settings.CNN_POOL_DIR,
            n_models=n_models,
            seed=seed,
            budget=Budget(**(budget or {})),
            device=device,
            jobs=jobs,
            progress=progress,
            on_progress=on_progress,
            feature_distance=cnn_feature_distance,
        )
    except (distortions.DistortionError, TypeError) as exc:
        raise ApplicationError(f"training the CNN pool failed: {exc}") from exc
    add_pool_dir(settings.CNN_POOL_DIR)
    return {
        "pool": str(settings.CNN_POOL_DIR),
        "models": len(manifest["models"]),
        "device": manifest["device"],
    }


def _register_cnn_pool() -> None:
    if (settings.CNN_POOL_DIR / "pool.json").is_file():
        from distortions.cnn.distortion import add_pool_dir

        add_pool_dir(settings.CNN_POOL_DIR)


def pool_size_check(*, build_config: dict, factor: int) -> None:
    """A candidate pool builds pool_factor times the items: within the build's item cap."""
    cap = settings.PERCEPTLAB_BUILD_LIMITS["n_items"]
    if factor > 1 and build_config.get("n_items", 100) * factor > cap:
        raise ApplicationError(
            f"a candidate pool builds n_items x pool_factor items, at most {cap} "
            f"({build_config.get('n_items', 100)} x {factor} here)",
            {"field": "config.sampling"},
        )


def _pool_entries(entries: list[dict], n_items: int) -> tuple[list[dict], int]:
    """A candidate pool's build (n_items x pool_factor test items; item i depends only on the seed and i,
    so the first n_items test items are the study's normal build): every extra train item joins the pool,
    extra val items are dropped (the val split keeps its normal size). Returns the entries to store and the
    train budget (the normal build's train items)."""
    kept, budget, seen = [], 0, 0
    for e in entries:
        if e["role"] == "test":
            seen += 1
            if seen > n_items and e["split"] != Item.Split.TRAIN:
                continue
            budget += seen <= n_items and e["split"] == Item.Split.TRAIN
        kept.append(e)
    return kept, budget


def _item_from_manifest(study: Study, e: dict) -> Item:
    """An Item from one line of the engine's manifest (distortions.read_manifest)."""
    return Item(
        study=study,
        index=e["index"],
        split=e["split"],
        category=e["category"],
        role=e["role"],
        ref_image=f"{STIMULI_DIR}/{e['files']['ref']}",
        p0_image=f"{STIMULI_DIR}/{e['files']['p0']}",
        p1_image=f"{STIMULI_DIR}/{e['files']['p1']}",
        expected=e["expected"] or "",
        records={"patch": e["patch"], **e["records"], "pixels_sha256": e["pixels_sha256"]},
    )


def _stimulus_names(entries: list[dict]) -> list[str]:
    """The stored names of a build manifest's images."""
    return [f"{STIMULI_DIR}/{name}" for e in entries for name in e["files"].values()]


def study_build_stimuli(
    *, study: Study, jobs: int | None = None, progress: bool = False, on_progress=None
) -> int:
    """Run the engine for the study's build_config and create its Items. Idempotent: a study that
    already has items is left alone. Returns the number of items."""
    if study.items.exists():
        return study.items.count()
    if not study.build_config:
        raise ApplicationError("this study has no distortion-engine config; import its items instead")

    factor = study.collection["sampling"]["pool_factor"]
    try:  # the platform's source rules and caps, again (the pool's too); an upload source becomes its files
        engine_config = engine_build_config(study=study)
        pool_size_check(build_config=engine_config, factor=factor)
    except ApplicationError as exc:
        Study.objects.filter(pk=study.pk).update(status=Study.Status.FAILED, build_error=exc.message)
        raise
    Study.objects.filter(pk=study.pk).update(status=Study.Status.BUILDING, build_error="")
    n_items = engine_config.get("n_items", 100)
    if factor > 1:
        engine_config = {**engine_config, "n_items": n_items * factor}
    _register_cnn_pool()
    images_dir = storage.local_path(STIMULI_DIR)  # a local storage's own folder, else the local copies
    workdir = storage.local_path(f"builds/{study.pk}")
    try:
        with source_photos(engine_config["source"]) as photos:  # an upload set's photos, readable here
            summary = distortions.build_study(
                {**engine_config, "source": photos},
                workdir,
                jobs=jobs,
                progress=progress,
                images_dir=images_dir,
                on_progress=on_progress,
            )
        entries = distortions.read_manifest(workdir / "manifest.jsonl")
        budget = None
        if factor > 1:
            entries, budget = _pool_entries(entries, n_items)
        items = [_item_from_manifest(study, e) for e in entries]
        for item in items:  # a pool's train items wait as candidates (judgments.pool releases them)
            item.active = budget is None or not (
                item.role == Item.Role.TEST and item.split == Item.Split.TRAIN
            )
        storage.publish_local(_stimulus_names(entries))  # before any row names them
        with transaction.atomic():
            Item.objects.bulk_create(items, batch_size=500)
            item_targets_sync(study=study)
            Study.objects.filter(pk=study.pk).update(status=Study.Status.ACTIVE, train_budget=budget)
        logger.info(
            "study %s: built %d items (manifest %s)", study.pk, len(entries), summary["manifest_sha256"][:12]
        )
        return len(entries)
    except distortions.DistortionError as exc:
        Study.objects.filter(pk=study.pk).update(status=Study.Status.FAILED, build_error=str(exc))
        raise ApplicationError(f"building stimuli failed: {exc}") from exc
    except BaseException as exc:  # interrupted or crashed: never leave the study marked as building
        Study.objects.filter(pk=study.pk).update(status=Study.Status.FAILED, build_error=repr(exc)[:2000])
        raise
    finally:
        shutil.rmtree(workdir / "images", ignore_errors=True)


DEMO_BUILD_CONFIG = {
    "kind": "2afc",
    "seed": 2018,
    "n_items": 200,
    "source": {"type": "skimage"},
    "composition": {"p_compose": 0.3, "max_ops": 2},
    "splits": {"train": 0.75, "val": 0.25},
    "category": "auto",
}
DEMO_CNN_FAMILIES = {"photometric": 1, "noise": 1, "blur": 1, "spatial": 1, "compression": 1, "cnn": 2}
DEMO_JND_BUILD_CONFIG = {"kind": "jnd", "seed": 2019, "n_items": 40, "source": {"type": "skimage"}}
DEMO_CROWD_BUILD_CONFIG = {**DEMO_BUILD_CONFIG, "seed": 2020}
CNN_POOL_JOB = "cnn_pool"  # BackgroundJob.name of the demo's CNN pool


def demo_studies() -> dict[str, Study]:
    """The demo studies by role: "2afc" (for a person to answer), "jnd", "crowd" (the simulated crowd's).
    Demo studies are few; they are told apart by kind and the `simulation` setting."""
    found: dict[str, Study] = {}
    for study in Study.objects.filter(is_demo=True).order_by("created_at"):
        role = "crowd" if study.config.get("simulation") else study.kind
        found.setdefault(role, study)
    return found


def cnn_pool_ready() -> bool:
    return (settings.CNN_POOL_DIR / "pool.json").is_file()


def demo_study_ensure(
    *, owner=None, n_items: int | None = None, with_cnn: bool | None = None
) -> tuple[Study, bool]:
    """The demo 2AFC study a person answers: triplets from scikit-image's bundled photographs. Never
    trains the CNN pool (the worker does, demo_cnn_pool_run, and its items join later): the CNN family
    is mixed in at build time only when the pool is ready already (`with_cnn` None) or asked for (True,
    which trains the pool here first). Reused if present."""
    existing = demo_studies().get("2afc")
    if existing is not None and existing.status == Study.Status.ACTIVE:
        return existing, False
    if existing is None:
        config = dict(DEMO_BUILD_CONFIG)
        if n_items is not None:
            config["n_items"] = n_items
        if with_cnn:
            cnn_pool_train(progress=True, **settings.PERCEPTLAB["DEMO_CNN_POOL"])
        if with_cnn or (with_cnn is None and cnn_pool_ready()):
            config["families"] = DEMO_CNN_FAMILIES
        existing = study_create(
            name=settings.PERCEPTLAB["DEMO_STUDY_NAME"],
            kind="2afc",
            build_config=config,
            owner=owner,
            is_demo=True,
        )
    study_build_stimuli(study=existing, progress=True)
    existing.refresh_from_db()
    return existing, True


def demo_crowd_training() -> dict:
    """The simulated study's training settings: AlexNet with weights `auto` (ImageNet when present, else a
    k-means trunk from the study's own train patches), so it trains offline."""
    weights = "auto"
    crowd = settings.PERCEPTLAB["DEMO_CROWD"]
    return {
        "every": crowd["every"],
        "backbones": [{"net": "alex", "weights": weights}],
        "baselines": ["l2_lab", "psnr", "dssim_lab"],
        "n_boot": 200,
        "epochs": 3,
        "epochs_decay": 2,
        "min_steps": 300,
    }


def demo_extra_studies_ensure(*, owner=None) -> dict[str, tuple[Study, bool]]:
    """The JND demo and the simulated crowd's 2AFC study, created as drafts (reused if present); the worker
    builds their stimuli (studies.study_build_stimuli, queued here) so the first page waits on neither."""
    from core.tasks import enqueue_on_commit

    crowd = settings.PERCEPTLAB["DEMO_CROWD"]
    wanted = {
        "jnd": dict(
            name=settings.PERCEPTLAB["DEMO_JND_STUDY_NAME"],
            kind="jnd",
            build_config=dict(DEMO_JND_BUILD_CONFIG),
            config={"hit_size": 24},
        ),
        "crowd": dict(
            name=settings.PERCEPTLAB["DEMO_CROWD_STUDY_NAME"],
            kind="2afc",
            build_config={**DEMO_CROWD_BUILD_CONFIG, "n_items": crowd["n_items"]},
            config={
                "simulation": True,
                "hit_size": crowd["hit_size"],
                "practice": False,
                "exclusion": {"min_sentinel_accuracy": 0.75},  # 3 of 4 sentinels (HITs of 20)
                "training": demo_crowd_training(),
            },
        ),
    }
    existing = demo_studies()
    out = {}
    for role, kwargs in wanted.items():
        study = existing.get(role)
        created = study is None
        if created:
            study = study_create(owner=owner, is_demo=True, **kwargs)
        if study.status in (Study.Status.DRAFT, Study.Status.FAILED) or (
            study.status == Study.Status.BUILDING and not study.items.exists()
        ):
            Study.objects.filter(pk=study.pk).update(status=Study.Status.BUILDING, build_error="")
            enqueue_on_commit("studies.study_build_stimuli", str(study.pk))
        out[role] = (study, created)
    return out


def demo_cnn_pool_pending(*, create: bool = True) -> bool:
    """Whether the demo's CNN pool still has to be trained (rundev's `cnnpool` process does it: manage.py
    demo_cnn_pool); marks its BackgroundJob queued then, so the home page says so from the first page.
    `create` False (the trainer): only a pool demo_setup asked for (no job, e.g. --skip-cnn: nothing)."""
    from studies.models import BackgroundJob

    pool = settings.PERCEPTLAB["DEMO_CNN_POOL"]
    if create:
        job, _ = BackgroundJob.objects.get_or_create(name=CNN_POOL_JOB, defaults={"total": pool["n_models"]})
    else:
        job = BackgroundJob.objects.filter(name=CNN_POOL_JOB).first()
        if job is None:
            return False
    if job.state == BackgroundJob.State.DONE and cnn_pool_ready():
        return False
    if job.state != BackgroundJob.State.RUNNING:
        BackgroundJob.objects.filter(pk=job.pk).update(state=BackgroundJob.State.QUEUED, message="")
    return True


def demo_cnn_pool_run(
    *, n_models: int, seed: int = 0, budget: dict | None = None, jobs: int | None = None
) -> dict:
    """Train the demo's pool with its progress in BackgroundJob "cnn_pool" (model k of n, for the home page
    and the dashboard), then add CNN items to the 2AFC demo. Done already: returns the stored result.
    Interrupted (Ctrl-C, SIGTERM): the job goes back to queued; the next run resumes from the checkpoints."""
    from django.utils import timezone

    from studies.models import BackgroundJob

    job, _ = BackgroundJob.objects.get_or_create(name=CNN_POOL_JOB, defaults={"total": n_models})
    if job.state == BackgroundJob.State.DONE and cnn_pool_ready():
        return job.result
    from distortions.cnn.trainer import Budget

    now = timezone.now()
    rows = BackgroundJob.objects.filter(pk=job.pk)
    rows.update(
        state=BackgroundJob.State.RUNNING,
        done=0,
        total=n_models,
        started_at=now,
        step_started_at=now,
        result={"steps_per_model": Budget(**(budget or {})).steps},  # for the progress within a model
    )

    def report(done: int, total: int) -> None:
        rows.update(done=done, total=total, step_started_at=timezone.now())

    try:
        result = cnn_pool_train(n_models=n_models, seed=seed, budget=budget, jobs=jobs, on_progress=report)
        result["demo_items_added"] = demo_cnn_items_join()
    except (KeyboardInterrupt, SystemExit):
        rows.update(state=BackgroundJob.State.QUEUED, message="interrupted; the next run resumes it")
        raise
    except BaseException as exc:
        rows.update(state=BackgroundJob.State.FAILED, message=str(exc)[:2000], finished_at=timezone.now())
        raise
    rows.update(
        state=BackgroundJob.State.DONE, done=n_models, finished_at=timezone.now(), result=result, message=""
    )
    return result


def demo_cnn_items_join(*, n_items: int | None = None) -> int:
    """Add CNN-family test triplets from the ready pool to the 2AFC demo (none if it has some already).
    The new items take indexes after the study's last and start with no judgments and no open leases, so
    HITs already started keep their trials and every item's count stays exact (judgments.assignments:
    an item is offered while judgments + open leases < target). Returns the number added."""
    study = demo_studies().get("2afc")
    if study is None or not cnn_pool_ready() or study.items.filter(category="cnn").exists():
        return 0
    _register_cnn_pool()
    n_items = n_items or settings.PERCEPTLAB["DEMO_CNN_ITEMS"]
    engine_config = {**DEMO_BUILD_CONFIG, "seed": 2021, "n_items": n_items, "families": {"cnn": 1}}
    workdir = storage.local_path(f"builds/{study.pk}-cnn")
    try:
        distortions.build_study(engine_config, workdir, jobs=1, images_dir=storage.local_path(STIMULI_DIR))
        entries = [e for e in distortions.read_manifest(workdir / "manifest.jsonl") if e["role"] == "test"]
        storage.publish_local(_stimulus_names(entries))
    except distortions.DistortionError as exc:
        raise ApplicationError(f"building the CNN items failed: {exc}") from exc
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    with transaction.atomic():
        locked = Study.objects.select_for_update().get(pk=study.pk)
        if locked.items.filter(category="cnn").exists():
            return 0
        last = locked.items.order_by("-index").values_list("index", flat=True).first()
        start = 0 if last is None else last + 1
        items = []
        for offset, e in enumerate(entries):
            item = _item_from_manifest(locked, e)
            item.index = start + offset
            items.append(item)
        Item.objects.bulk_create(items, batch_size=500)
        item_targets_sync(study=locked)
    logger.info("demo study %s: %d CNN items joined", study.pk, len(items))
    return len(items)


def study_build_config_check(*, kind: str, build_config: dict, owner) -> distortions.StudyConfig:
    """The engine config a build config runs as, checked as study_create checks it (the platform's source
    rules and caps, then the engine's own validation and the CNN cap); ApplicationError naming the field.
    The new-study form's live preview (studies.preview) uses it."""
    engine_config = build_config_check(build_config=build_config, owner=owner)
    try:
        config = distortions.StudyConfig.from_dict({**engine_config, "kind": kind})
        build_config_check_cnn(engine_config=config)
    except distortions.DistortionError as exc:
        raise ApplicationError(f"invalid distortion-engine config: {exc}", {"field": "build_config"}) from exc
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise ApplicationError(
            f"invalid distortion-engine config: {exc.__class__.__name__}: {exc}", {"field": "build_config"}
        ) from exc
    return config
