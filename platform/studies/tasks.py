from celery import shared_task


@shared_task(name="studies.study_build_stimuli", bind=True, time_limit=3600, soft_time_limit=3500)
def study_build_stimuli(self, study_id: str) -> dict:
    from studies.models import Study
    from studies.services import study_build_stimuli as build

    try:
        study = Study.objects.get(pk=study_id)
    except Study.DoesNotExist:
        return {"study": study_id, "status": "gone"}

    def report(done: int, total: int) -> None:
        self.update_state(state="PROGRESS", meta={"done": done, "total": total})
        Study.objects.filter(pk=study_id).update(build_progress={"done": done, "total": total})

    return {"study": study_id, "items": build(study=study, jobs=1, on_progress=report)}


@shared_task(
    name="distortions.autoencoder_pool_train",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    time_limit=6 * 3600,
    soft_time_limit=6 * 3600 - 60,
)
def autoencoder_pool_train(
    self,
    n_models: int = 16,
    seed: int = 0,
    budget: dict | None = None,
    jobs: int | None = None,
) -> dict:
    """Routed to the `gpu` queue (GPU when present, CPU otherwise; `make run` trains the demo's pool in its
    own process instead, manage.py demo_cnn_pool). A redelivered task after a worker crash resumes every
    model from its last checkpoint; finished models are reused."""
    from studies.services import cnn_pool_train

    def report(done: int, total: int) -> None:
        self.update_state(state="PROGRESS", meta={"done": done, "total": total})

    return cnn_pool_train(n_models=n_models, seed=seed, budget=budget, jobs=jobs, on_progress=report)


@shared_task(name="studies.study_import_items", time_limit=3600, soft_time_limit=3500)
def study_import_items(study_id: str, upload: str, split: str, category: str) -> dict:
    """Import a checked upload (studies.imports.study_import_start stored it); progress in build_progress."""
    from core import storage
    from studies.imports import study_import_items as run
    from studies.imports import upload_path
    from studies.models import Study

    path = upload_path(upload)
    try:
        study = Study.objects.get(pk=study_id)
    except Study.DoesNotExist:
        return {"study": study_id, "status": "gone"}
    if path is None or not storage.exists(path):
        return {"study": study_id, "status": "gone"}
    return {"study": study_id, **run(study=study, upload=path, split=split, category=category)}
