"""Writes for the simulated crowd: which studies it may answer."""

from __future__ import annotations

from core.exceptions import ApplicationError
from judgments.models import Judgment
from studies.lifecycle import study_update_config
from studies.models import Study


def simulation_study_prepare(*, study_id: str, mark: bool = False) -> Study:
    """The study the simulated crowd may answer: a simulation study, or (with `mark`) a study without
    real judgments, which is marked as one first. Simulated judgments are never mixed with real ones."""
    study = Study.objects.filter(pk=study_id).first()
    if study is None:
        raise ApplicationError(f"no study {study_id}")
    if not study.collection["simulation"]:
        if not mark:
            raise ApplicationError(
                "not a simulation study: pass --mark (only for a study without real judgments)"
            )
        if Judgment.objects.filter(item__study=study, worker__is_simulated=False).exists():
            raise ApplicationError("this study has real judgments; simulated ones are never mixed in")
        study_update_config(study=study, config={"simulation": True})
    return study


def demo_crowd_finished(*, study: Study) -> bool:
    """Whether an earlier run finished the demo crowd: it exports the study when the crowd is done."""
    from exports.models import Export

    return Export.objects.filter(study=study).exists()


def demo_crowd_wait_built(*, study_id, timeout_s: float = 900.0, poll_s: float = 2.0) -> Study:
    """The simulated study once the worker has built its stimuli (ApplicationError when the build failed
    or did not finish within `timeout_s`)."""
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        study = Study.objects.get(pk=study_id)
        if study.status == Study.Status.ACTIVE:
            return study
        if study.status == Study.Status.FAILED:
            raise ApplicationError(f"the simulated study's stimuli failed to build: {study.build_error}")
        if time.monotonic() > deadline:
            raise ApplicationError(f"the simulated study is still {study.status} after {timeout_s:.0f} s")
        time.sleep(poll_s)


def demo_crowd_finish(*, study: Study, owner=None):
    """After the crowd: retrain on every judgment (the last `every` may not have triggered one) and export
    the study as `owner` (the admin), so the dashboard shows a finished export. Returns the Export."""
    from exports.services import export_create
    from training.triggers import training_request

    try:
        training_request(study=study, force=True)
    except ApplicationError:  # retrained moments ago: the periodic check covers what is left
        pass
    return export_create(study=study, user=owner)
