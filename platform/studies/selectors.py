from collections.abc import Callable

from django.db.models import Count, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce

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
    return Study.objects.filter(status=Study.Status.ACTIVE, is_demo=True).annotate(n_items=_item_count())


def demo_simulated_studies() -> list[Study]:
    """The simulated crowd's demo studies, whatever their status (the home page links their dashboards,
    which need a login; nobody can answer them: a simulation study takes only simulated workers)."""
    qs = Study.objects.filter(is_demo=True).annotate(n_items=_item_count()).order_by("created_at")
    return [s for s in qs if s.config.get("simulation")]


def studies_visible_to(*, user) -> QuerySet[Study]:
    """The studies a user may open: their own (a superuser's: all). Without study_list_for's item counts,
    which cost a pass over a study's items (0.5 s at 187k items) that a page of one study does not show."""
    return Study.objects.all() if user.is_superuser else Study.objects.filter(owner=user)


def _item_count(**filters) -> Coalesce:
    """Each study's items (matching `filters`) as a subquery per listed study: the database counts only
    the studies a page shows, each on item_tally_idx (which leads with study and role; index-only on
    PostgreSQL). A join over the items counted every item of every visible study before the page was
    cut (0.3 s for a study of 187k items, on every study list and every study API call)."""
    items = Item.objects.filter(study=OuterRef("pk"), **filters).order_by().values("study")
    return Coalesce(Subquery(items.annotate(n=Count("role")).values("n")), 0)


def study_list_for(*, user) -> QuerySet[Study]:
    """studies_visible_to with each study's item and sentinel counts (n_items, n_sentinels)."""
    return studies_visible_to(user=user).annotate(
        n_items=_item_count(), n_sentinels=_item_count(role=Item.Role.SENTINEL)
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
