"""Counts of a study's judgments, kept as they are stored instead of counted when a page asks.

Every answer adds its judgment to five counters on its assignment (Assignment.n_tests, n_sentinels,
n_sentinels_right, n_first_key, n_flagged) in the same statement that stores it (judgments.sql.store_answers),
so a judgment and its tally commit together or not at all, and a replayed answer, which stores nothing,
adds nothing. Judgments are never edited in the fields counted here, and never deleted while their
assignment lives, so the counters stay exact. The dashboard's per-worker counts and the study's totals
sum one row per HIT (about judgments / 100) instead of reading every judgment: 256 ms -> a few ms at 500k
judgments (docs/benchmarks.md, "BAPPS scale").

Writers that store judgments without the answer path (crowdsim.scale's bulk build, the training bench)
add them with `add_to`. `recount` counts from the judgments themselves: the check (`mismatches`) and the
tests compare the two.
"""

from __future__ import annotations

from django.db.models import Count, Q

from judgments.models import RESPONSES, Assignment, Judgment, Trial

# study_tallies' key -> the Assignment counter it sums
FIELDS = {
    "tests": "n_tests",
    "sentinels": "n_sentinels",
    "right": "n_sentinels_right",
    "firsts": "n_first_key",
    "flagged": "n_flagged",
}
FIRST_KEYS = tuple(
    keys[0] for keys in RESPONSES.values()
)  # "left" (2AFC), "same" (JND): never another kind's


def increments(*, trial_kind: str, response: str, correct: bool | None, flagged: bool) -> tuple[int, ...]:
    """What one judgment adds to each counter, in FIELDS' order."""
    counted = trial_kind != Trial.Kind.PRACTICE
    sentinel = trial_kind == Trial.Kind.SENTINEL
    return (
        int(trial_kind == Trial.Kind.TEST),
        int(sentinel),
        int(sentinel and correct is True),
        int(counted and response in FIRST_KEYS),
        int(bool(flagged)),
    )


def add_to(assignment: Assignment, judgment: Judgment) -> None:
    """Count `judgment` on its `assignment` (not saved here): for writers that bypass the answer path."""
    added = increments(
        trial_kind=judgment.kind,
        response=judgment.response,
        correct=judgment.correct,
        flagged=judgment.timing_flagged,
    )
    for field, n in zip(FIELDS.values(), added, strict=True):
        setattr(assignment, field, getattr(assignment, field) + n)


def recount(*, study_id) -> dict:
    """assignment id -> {counter field: count} from the study's judgments themselves (one GROUP BY)."""
    rows = (
        Judgment.objects.filter(assignment__study_id=study_id)
        .order_by()
        .values("assignment_id")
        .annotate(
            n_tests=Count("pk", filter=Q(kind=Trial.Kind.TEST)),
            n_sentinels=Count("pk", filter=Q(kind=Trial.Kind.SENTINEL)),
            n_sentinels_right=Count("pk", filter=Q(kind=Trial.Kind.SENTINEL, correct=True)),
            n_first_key=Count("pk", filter=~Q(kind=Trial.Kind.PRACTICE) & Q(response__in=FIRST_KEYS)),
            n_flagged=Count("pk", filter=Q(timing_flagged=True)),
        )
    )
    return {row.pop("assignment_id"): row for row in rows}


def mismatches(*, study_id) -> dict:
    """assignment id -> (kept, recounted) for every assignment of the study whose counters disagree with
    its judgments: empty when the tallies are exact."""
    counted = recount(study_id=study_id)
    zero = dict.fromkeys(FIELDS.values(), 0)
    out = {}
    for row in Assignment.objects.filter(study_id=study_id).values("pk", *FIELDS.values()):
        pk = row.pop("pk")
        expected = counted.get(pk, zero)
        if row != expected:
            out[pk] = (row, expected)
    return out


def resync(*, study_id) -> int:
    """Set every assignment's counters of the study from its judgments (recount); returns how many changed.
    For bulk writers that insert judgments after their assignments (devtools.bench_training), and as the
    repair should a counter ever be found wrong (mismatches)."""
    wrong = mismatches(study_id=study_id)
    rows = []
    for pk, (_, expected) in wrong.items():
        row = Assignment(pk=pk, **expected)
        rows.append(row)
    Assignment.objects.bulk_update(rows, list(FIELDS.values()), batch_size=1000)
    return len(rows)
