from collections.abc import Callable

from django.db.models import Count, Q, QuerySet

from studies.models import Item, Study

# A study's live statistics come from the apps above this one (judgments registers its progress and QC
# summary in JudgmentsConfig.ready()), so that studies never imports them.
_stats_provider: Callable[..., dict] | None = None


def study_stats_provider_set(provider: Callable[..., dict]) -> None:
    """Register the function (keyword `study`) that computes a study's live statistics."""
    global _stats_provider
    _stats_provider = provider


def study_stats(*, study: Study) -> dict:
    """The study's live statistics (progress, QC), from the registered provider; {} without one."""
    return _stats_provider(study=study) if _stats_provider is not None else {}


def study_list_public() -> QuerySet[Study]:
    """What the public home page lists: the local demo study only. Real studies are reached through their
    crowd links; listing their ids would let anyone start (and hold) their work."""
    return Study.objects.filter(status=Study.Status.ACTIVE, is_demo=True).annotate(n_items=Count("items"))


def demo_simulated_studies() -> list[Study]:
    """The simulated crowd's demo studies, whatever their status (the home page links their dashboards,
    which need a login; nobody can answer them: a simulation study takes only simulated workers)."""
    qs = Study.objects.filter(is_demo=True).annotate(n_items=Count("items")).order_by("created_at")
    return [s for s in qs if s.config.get("simulation")]


def studies_visible_to(*, user) -> QuerySet[Study]:
    """The studies a user may open: their own (a superuser's: all). Without study_list_for's item counts,
    which cost a pass over a study's items (0.5 s at 187k items) that a page of one study does not show."""
    return Study.objects.all() if user.is_superuser else Study.objects.filter(owner=user)


def study_item_counts(*, study: Study) -> dict:
    """{"n_items", "n_sentinels"} of one study (the numbers study_list_for annotates), counted by role: on
    PostgreSQL an index-only scan of item_tally_idx, which leads with (study, role)."""
    by_role = dict(Item.objects.filter(study=study).order_by().values_list("role").annotate(n=Count("role")))
    return {"n_items": sum(by_role.values()), "n_sentinels": by_role.get(Item.Role.SENTINEL, 0)}


def study_list_for(*, user) -> QuerySet[Study]:
    return studies_visible_to(user=user).annotate(
        n_items=Count("items"), n_sentinels=Count("items", filter=Q(items__role=Item.Role.SENTINEL))
    )


def _model_fraction(index: int, steps: int | None) -> float:
    """How far model `index` of the demo pool has trained, from its snapshot files (snapshot_<step>.pt,
    distortions.cnn.trainer); 0 without any. Reads file names only (web processes never import torch)."""
    from django.conf import settings

    if not steps:
        return 0.0
    done = [
        int(p.stem.rsplit("_", 1)[1])
        for p in (settings.CNN_POOL_DIR / f"model_{index:03d}").glob("snapshot_*.pt")
        if p.stem.rsplit("_", 1)[1].isdigit()
    ]
    return min(max(done, default=0) / steps, 1.0)


def duration_words(seconds: float) -> str:
    """A duration as people read it: '40 s', '4 min', '2 h 13 min'."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"


def cnn_pool_progress(*, now=None) -> dict | None:
    """The demo CNN pool's background job for the home page and the dashboard, or None when there is none
    (a deployment without the demo): state, models done of total, the model in training (k of n) and how
    far it is (its snapshots), seconds since the start, and the estimated seconds left: elapsed time over
    the work done so far (models plus the current one's fraction), None before the first snapshot."""
    from django.utils import timezone

    from studies.models import BackgroundJob

    job = BackgroundJob.objects.filter(name="cnn_pool").first()
    if job is None:
        return None
    now = now or timezone.now()
    eta, fraction = None, 0.0
    if job.state == BackgroundJob.State.RUNNING and job.started_at and job.done < job.total:
        fraction = _model_fraction(job.done, (job.result or {}).get("steps_per_model"))
        work = job.done + fraction
        if work > 0:
            elapsed = (now - job.started_at).total_seconds()
            eta = max(0, round(elapsed / work * (job.total - work)))
    return {
        "state": job.state,
        "done": job.done,
        "total": job.total,
        "current": min(job.done + 1, job.total),
        "current_percent": round(100 * fraction),
        "elapsed_s": round((now - job.started_at).total_seconds()) if job.started_at else None,
        "eta_s": eta,
        "eta": duration_words(eta) if eta is not None else None,
        "message": job.message,
        "items_added": (job.result or {}).get("demo_items_added"),
    }
