"""Reads of trained models: a study's model versions, one version's card, and who may see them."""

from __future__ import annotations

from importlib import metadata

from django.shortcuts import get_object_or_404

from core.exceptions import ApplicationError
from studies.models import Item, Study
from training.models import Evaluation, ModelVersion

STANDARD_TRUNK = "imagenet"  # the only trunk a bundle does not ship (torchvision's own weights)


def owned_model_version(request, model_id) -> ModelVersion:
    """The model version, if the requester owns its study or is a superuser (as exports); 404 otherwise,
    so other researchers' model ids are not confirmed."""
    version = get_object_or_404(ModelVersion.objects.select_related("study"), pk=model_id)
    if not (request.user.is_superuser or version.study.owner_id == request.user.pk):
        raise ApplicationError("Not found.", status_code=404)
    return version


def model_versions_for(*, study: Study, ready_only: bool = False):
    qs = ModelVersion.objects.filter(study=study).order_by("-created_at")
    return qs.filter(status=ModelVersion.Status.READY) if ready_only else qs


def ships_trunk(version: ModelVersion) -> bool:
    """A trunk that is not torchvision's ImageNet one ships with the model (a trained trunk always)."""
    return version.weights != STANDARD_TRUNK or version.variant != "lin"


def trunk_of(version: ModelVersion) -> dict:
    """Which trunk ran and why (versions trained before this was recorded say so)."""
    info = dict(version.backbone_info or {})
    if not info:
        info = {
            "requested": version.weights,
            "used": version.weights,
            "reason": "not recorded (trained before perceptlab recorded why a backbone ran)",
        }
    if version.variant != "lin":
        info["trained"] = f"the trunk was trained too ({version.variant})"
    info["shipped"] = ships_trunk(version)
    if info["shipped"]:
        info["sha256"] = version.trunk_sha256
    return info


def _score(row: Evaluation) -> dict:
    return {"score": row.score, "ci_low": row.ci_low, "ci_high": row.ci_high, "n_items": row.n_items}


def held_out(*, version: ModelVersion) -> dict:
    """The held-out evaluation of the run that trained ``version``: its own rows and every other metric of
    that run (human ceiling, baselines, controls), per category."""
    own = Evaluation.objects.filter(model_version=version).order_by("category")
    first = own.first()
    if first is None:
        return {"metrics": [], "this_model": {}}
    rows = Evaluation.objects.filter(run=first.run).order_by("kind", "metric", "category")
    metrics = [
        {
            "metric": r.metric,
            "kind": r.kind,
            "category": r.category,
            "score": r.score,
            "ci_low": r.ci_low,
            "ci_high": r.ci_high,
            "n_items": r.n_items,
            "this_model": r.model_version_id == version.pk,
        }
        for r in rows
    ]
    all_row = own.filter(category="all").first() or first
    return {
        "run": str(first.run),
        "split": first.split,
        "measure": first.measure,
        "n_items": all_row.n_items,
        "n_judgments": first.n_judgments,
        "this_model": {r.category: _score(r) for r in own},
        "human_ceiling": {m["category"]: m["score"] for m in metrics if m["kind"] == Evaluation.Kind.HUMAN},
        "metrics": metrics,
    }


def code_version() -> str:
    try:
        return f"perceptlab {metadata.version('perceptlab')}"
    except metadata.PackageNotFoundError:
        return "perceptlab (source checkout, version not installed)"


def model_card(*, version: ModelVersion) -> dict:
    """The model card (metric.bundle completes it with the files, their sha256s and usage)."""
    study = version.study
    categories = sorted(
        set(Item.objects.filter(study=study, role=Item.Role.TEST).values_list("category", flat=True))
    )
    return {
        "name": f"{study.name}: {version.backbone}-{version.weights} {version.variant} v{version.version}",
        "id": str(version.pk),
        "net": version.backbone,
        "version": "0.1",
        "variant": version.variant,
        "weights": version.weights,
        "model_version": version.version,
        "trunk": trunk_of(version),
        "heads": {"format": "lpips (lin{k}.model.1.weight)", "sha256": version.heads_sha256},
        "data": {
            "study": {"id": str(study.pk), "name": study.name, "kind": study.kind},
            "train_items": version.n_train_items,
            "train_judgments": version.n_train_judgments,
            "categories": categories,
        },
        "evaluation": held_out(version=version),
        "created": version.finished_at.isoformat() if version.finished_at else None,
        "code_version": code_version(),
    }


def models_panel(*, study: Study) -> list[dict]:
    """The dashboard's Models panel: each ready version (newest first, at most 20), its trunk and why, data
    and held-out score (as held_out reports them: the version's own rows, and its run's human ceiling over
    all categories); `current` marks the newest of each backbone, trunk and variant. At most three queries
    however many versions there are."""
    versions = list(model_versions_for(study=study, ready_only=True)[:20])
    own: dict = {}
    for row in Evaluation.objects.filter(model_version__in=versions).order_by("category"):
        own.setdefault(row.model_version_id, []).append(row)
    ceilings = dict(  # per run; as in held_out, the last HUMAN metric by name wins
        Evaluation.objects.filter(
            run__in={rows[0].run for rows in own.values()}, kind=Evaluation.Kind.HUMAN, category="all"
        )
        .order_by("metric")
        .values_list("run", "score")
    )
    out, seen = [], set()
    for version in versions:
        rows = own.get(version.pk, [])
        every = {r.category: r for r in rows}.get("all")  # as held_out's this_model
        key = (version.backbone, version.weights, version.variant)
        out.append(
            {
                "current": key not in seen,
                "id": version.pk,
                "name": str(version),
                "finished_at": version.finished_at,
                "trunk": trunk_of(version),
                "n_train_items": version.n_train_items,
                "n_train_judgments": version.n_train_judgments,
                "measure": rows[0].measure if rows else "",
                "score": None if every is None else _score(every),
                "ceiling": ceilings.get(rows[0].run) if rows else None,
                "download_url": f"/api/v1/models/{version.pk}/download/",
                "heads_url": f"/api/v1/models/{version.pk}/download/?part=heads",
            }
        )
        seen.add(key)
    return out
