"""The researcher's "try it as an annotator" HIT: the real trial sequence (assignments.hit_sequence: practice,
then test items with sentinels mixed in, sides balanced), drawn from the study and stored nowhere. No worker,
assignment, trial or judgment row, no lease and no counter moves; the page answers it in the browser only."""

from __future__ import annotations

import random
from collections.abc import Callable

from core.stimuli import STIMULUS_PATH
from judgments.assignments import hit_sequence
from judgments.models import Trial
from judgments.selectors import IMAGE_SLOTS, practice_answer, slot_image
from judgments.sql import TRIAL_ITEM_FIELDS
from studies.collection import completion_redirect
from studies.models import Item, Study

PREVIEW_MAX_TESTS = 12  # a try-out is short: at most this many of the HIT's test trials
_rng = random.SystemRandom()


def hit_preview(*, study: Study, image_url: Callable[[str], str], rng: random.Random | None = None) -> dict:
    """A preview HIT in the annotator API's shape (judgments.apis.assignment_output) plus `preview`: the
    study's practice items (when the study uses practice), up to PREVIEW_MAX_TESTS test items drawn at random
    whatever their load, and the sentinels a HIT of that many tests gets. `image_url(name)` turns a stimulus
    file name (``<sha256>.png``) into the owner-only URL the page loads it from. Reads only."""
    rng = rng or _rng
    config = study.collection
    test_ids = list(study.items.filter(role=Item.Role.TEST).values_list("pk", flat=True))
    n_tests = min(config["hit_size"], PREVIEW_MAX_TESTS, len(test_ids))
    tests = list(Item.objects.filter(pk__in=rng.sample(test_ids, n_tests)).only(*TRIAL_ITEM_FIELDS))
    rng.shuffle(tests)
    sequence = hit_sequence(study=study, config=config, tests=tests, rng=rng)
    trials = []
    for position, (item, kind, swap) in enumerate(sequence):
        images = {}
        for slot in IMAGE_SLOTS[study.kind]:
            path = slot_image(kind=study.kind, item=item, swap=swap, slot=slot) or ""
            match = STIMULUS_PATH.fullmatch(path)
            images[slot] = image_url(f"{match['sha']}.png") if match else ""
        trial = {
            "id": f"preview-{position}",
            "position": position,
            "practice": kind == Trial.Kind.PRACTICE,
            "answered": False,
            "images": images,
        }
        answer = practice_answer(kind=study.kind, expected=item.expected, swap=swap)
        if trial["practice"] and answer:
            trial["answer"] = answer
        trials.append(trial)
    code = config["completion_code"]
    return {
        "preview": True,
        "token": "preview",
        "status": "started",
        "kind": study.kind,
        "study": {
            "id": str(study.pk),
            "name": study.name,
            "kind": study.kind,
            "timing": config["timing"],
            "instructions": config["instructions"],
        },
        "lease_expires_at": None,
        "n_trials": len(trials),
        "n_answered": 0,
        "next_position": 0 if trials else None,
        "trials": trials,
        "completion": {
            "preview": True,
            "code": code,
            "prolific_redirect_url": completion_redirect(study.config, code),
            "hit_tests": config["hit_size"],
        },
    }


def study_has_image(*, study: Study, name: str) -> str | None:
    """The media path of stimulus file `name` (``<sha256>.png``) when one of the study's items shows it,
    else None: the try page's image endpoint serves the owner's own stimuli only."""
    path = f"stimuli/{name}"
    if not STIMULUS_PATH.fullmatch(path):
        return None
    items = study.items
    if (
        items.filter(ref_image=path).exists()
        or items.filter(p0_image=path).exists()
        or items.filter(p1_image=path).exists()
    ):
        return path
    return None
