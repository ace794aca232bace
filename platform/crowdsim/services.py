"""Writes for the simulated crowd: which studies it may answer."""

from __future__ import annotations

from core.exceptions import ApplicationError
from judgments.models import Judgment
from studies.models import Study
from studies.services import study_update_config


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
