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


def study_list_for(*, user) -> QuerySet[Study]:
    qs = Study.objects.annotate(
        n_items=Count("items"), n_sentinels=Count("items", filter=Q(items__role=Item.Role.SENTINEL))
    )
    if user.is_superuser:
        return qs
    return qs.filter(owner=user)


def cnn_pool_progress(*, now=None) -> dict | None:
    """The demo CNN pool's background job for the home page and the dashboard, or None when there is none
    (a deployment without the demo): state, models done of total, the model in training (k of n), seconds
    since the start and the estimated seconds left (None until the first model is done)."""
    from django.utils import timezone

    from studies.models import BackgroundJob

    job = BackgroundJob.objects.filter(name="cnn_pool").first()
    if job is None:
        return None
    now = now or timezone.now()
    eta = None
    if job.state == BackgroundJob.State.RUNNING and job.done and job.started_at and job.step_started_at:
        per_model = (job.step_started_at - job.started_at).total_seconds() / job.done
        since_step = (now - job.step_started_at).total_seconds()
        eta = max(0, round(per_model * (job.total - job.done) - since_step))
    return {
        "state": job.state,
        "done": job.done,
        "total": job.total,
        "current": min(job.done + 1, job.total),
        "elapsed_s": round((now - job.started_at).total_seconds()) if job.started_at else None,
        "eta_s": eta,
        "message": job.message,
        "items_added": (job.result or {}).get("demo_items_added"),
    }
