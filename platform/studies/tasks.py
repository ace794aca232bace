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

    return {"study": study_id, "items": build(study=study, jobs=1, on_progress=report)}
