from celery import shared_task


@shared_task(
    name="training.study_retrain",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    time_limit=3 * 3600,
    soft_time_limit=3 * 3600 - 60,
)
def study_retrain(self, study_id: str) -> dict:
    """Routed to the `gpu` queue (GPU when present, CPU otherwise). A worker killed mid-job leaves its
    message unacknowledged: the broker delivers it again and the new job takes over the stale claim. A job
    that finds another one running (a live claim) retries once that one can have finished or died."""
    from studies.models import Study
    from training.services import study_retrain as retrain

    study = Study.objects.filter(pk=study_id).first()
    if study is None:
        return {"study": study_id, "status": "gone"}

    def report(done: int, total: int) -> None:
        self.update_state(state="PROGRESS", meta={"stage": "features", "done": done, "total": total})

    result = retrain(study=study, progress=report)
    if result["status"] == "busy":
        raise self.retry(
            countdown=result["retry_in"], max_retries=None
        )  # bounded by the other job's time limit
    if study.train_budget is not None:  # a candidate pool: its scores follow the new models
        from core.tasks import enqueue_on_commit

        enqueue_on_commit("training.candidates_rescore", str(study.pk))
    return result


@shared_task(name="training.candidates_rescore", acks_late=True, reject_on_worker_lost=True)
def candidates_rescore(study_id: str) -> dict:
    """After a retrain: fresh sampler scores for a pool's candidates (training.rescoring). Assignment never
    waits for it; a lost run only leaves the older scores in place until the next retrain."""
    from studies.models import Study
    from training.rescoring import candidates_rescore as rescore

    study = Study.objects.filter(pk=study_id).first()
    if study is None:
        return {"study": study_id, "status": "gone"}
    return rescore(study=study)


@shared_task(name="training.retrain_due")
def retrain_due() -> int:
    """Periodic (celery beat): queue retraining wherever enough new judgments arrived."""
    from training.triggers import retrain_due as due

    return due()
