"""A study's lifecycle: start, pause, close, and its collection settings changed mid-study (which ones may
change once annotators have seen it, and why). The API and the researcher's pages both call these."""

from __future__ import annotations

import logging

from core.exceptions import ApplicationError
from studies.collection import collection_config, votes_range
from studies.models import Item, Study
from studies.services import pool_size_check
from studies.targets import item_targets_sync

logger = logging.getLogger(__name__)


# --- lifecycle ------------------------------------------------------------------------------------------
def study_start(*, study: Study) -> Study:
    """Open a built (or imported) study to annotators."""
    if study.status == Study.Status.ACTIVE:
        return study
    if study.status == Study.Status.CLOSED:
        raise ApplicationError(
            "the study is closed for good and cannot be started again", {"code": "closed"}, status_code=409
        )
    if study.status in (Study.Status.BUILDING,):
        raise ApplicationError("the stimuli are still being built", {"code": "building"}, status_code=409)
    if not study.items.filter(role=Item.Role.TEST).exists():
        raise ApplicationError("the study has no test items yet; build or import some first", status_code=409)
    Study.objects.filter(pk=study.pk).update(status=Study.Status.ACTIVE)
    study.status = Study.Status.ACTIVE
    logger.info("study %s: active", study.pk)
    return study


def study_pause(*, study: Study) -> Study:
    """Stop handing out new assignments. Started assignments may still be finished and submitted."""
    if study.status not in (Study.Status.ACTIVE, Study.Status.PAUSED):
        raise ApplicationError(
            f"only an active study can be paused (this one is {study.status})", status_code=409
        )
    Study.objects.filter(pk=study.pk).update(status=Study.Status.PAUSED)
    study.status = Study.Status.PAUSED
    logger.info("study %s: paused", study.pk)
    return study


def study_close(*, study: Study) -> Study:
    """Close the study for good: no new assignments ever, and no restart (study_start refuses). Started
    assignments may still be finished and submitted; exports and training keep working."""
    if study.status == Study.Status.CLOSED:
        return study
    if study.status == Study.Status.BUILDING:
        raise ApplicationError(
            "the stimuli are still being built; close the study when the build has ended",
            {"code": "building"},
            status_code=409,
        )
    Study.objects.filter(pk=study.pk).update(status=Study.Status.CLOSED)
    study.status = Study.Status.CLOSED
    logger.info("study %s: closed", study.pk)
    return study


def study_update_config(*, study: Study, config: dict) -> Study:
    """Change collection settings (merged over the current ones, validated)."""
    merged = {**study.config, **config}
    full = collection_config(study.kind, merged, saving=True)
    study_config_change_check(study=study, config=merged)  # what may change mid-study (409 otherwise)
    if study.build_config:  # a pool still to be built must fit the build cap, as at creation
        pool_size_check(build_config=study.build_config, factor=full["sampling"]["pool_factor"])
    Study.objects.filter(pk=study.pk).update(config=merged)
    study.config = merged
    item_targets_sync(study=study)  # a raised count raises the items' targets
    return study


def study_update(*, study: Study, name: str | None = None, config: dict | None = None) -> Study:
    """A researcher's PATCH: the name and / or collection settings (study_update_config)."""
    if config is not None:
        study_update_config(study=study, config=config)
    if name is not None:
        Study.objects.filter(pk=study.pk).update(name=name)
        study.name = name
    return study


# --- what may change mid-study ----------------------------------------------------------------------------
# Once a study has started (active, paused or closed, or it holds any judgment), a setting that would make
# earlier and later judgments incomparable is locked; the others (consent, instructions, HIT size, sentinel
# rate, practice, lease TTL, completion code and URL, platforms, training) may change. Both doors (the API's
# PATCH and the dashboard's settings page) go through study_update_config, which applies this rule, and
# locks sampling.pool_factor once the stimuli exist (the candidate pool was built with them).
CONFIG_LOCKS = {
    "timing": "the stimulus presentation times: judgments made under other timings are not comparable",
    "exclusion": "the exclusion rule: earlier workers' QC was decided under the old rule",
    "simulation": "simulated and real judgments are never mixed in one study",
}
CONFIG_ONLY_RISES = {
    "judgments_per_item": "judgments per item may only rise: items already answered were counted against it"
}


def study_has_judgments(*, study: Study) -> bool:
    return Item.objects.filter(study=study, judgments__isnull=False).exists()


def study_started(*, study: Study) -> bool:
    """Whether annotators may have seen the study: not a draft, a build or a failed build, or judged."""
    return study.status not in (
        Study.Status.DRAFT,
        Study.Status.BUILDING,
        Study.Status.FAILED,
    ) or study_has_judgments(study=study)


def study_pool_built(*, study: Study) -> bool:
    """Whether sampling.pool_factor is locked: the stimuli exist (a pool, if any, was built with them)."""
    return study.items.exists()


def study_config_locks(*, study: Study) -> dict[str, str]:
    """The collection settings locked now, with why: {} before the study starts. `simulation` locks with
    the first judgment only (marking an opened but unanswered study as a simulation is harmless)."""
    if not study_started(study=study):
        return {}
    locks = dict(CONFIG_LOCKS)
    if not study_has_judgments(study=study):
        locks.pop("simulation")
    return locks


def study_config_change_check(*, study: Study, config: dict) -> None:
    """Refuse (409, naming the field and why) a new config that changes a locked setting of a started
    study or lowers its judgments per item."""
    old = collection_config(study.kind, study.config)
    new = collection_config(study.kind, config)
    if old["sampling"]["pool_factor"] != new["sampling"]["pool_factor"] and study_pool_built(study=study):
        raise ApplicationError(
            "sampling.pool_factor cannot change once the stimuli exist: the pool was built with them",
            {"field": "config.sampling", "code": "locked"},
            status_code=409,
        )
    locks = study_config_locks(study=study)
    if not locks:
        return
    for key, why in locks.items():
        if old[key] != new[key]:
            raise ApplicationError(
                f"{key} cannot change once the study has started: {why}",
                {"field": f"config.{key}", "code": "locked"},
                status_code=409,
            )
    for key, why in CONFIG_ONLY_RISES.items():
        # a count n is the range (n, n); neither end may go down
        lowered = sorted(
            split
            for split in new[key]
            if split in old[key]
            and any(a < b for a, b in zip(votes_range(new, split), votes_range(old, split), strict=True))
        )
        if lowered:
            raise ApplicationError(
                f"{key}[{lowered[0]!r}] cannot go below {old[key][lowered[0]]}: {why}",
                {"field": f"config.{key}", "code": "locked"},
                status_code=409,
            )
