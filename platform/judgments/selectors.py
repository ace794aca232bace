"""Reads for studies' crowd data: progress, QC and per-worker statistics.

A study's judgments are found through their assignment (a narrow table, one row per HIT), not their item:
items are wide (their records), and joining them cost three times as much in every study-wide aggregate
at BAPPS scale (187k items, 500k judgments; docs/benchmarks.md, "BAPPS scale")."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta

from django.db import connection
from django.db.models import Count, F, FilteredRelation, OuterRef, Q, Subquery, Sum, Window
from django.db.models.functions import Coalesce, RowNumber
from django.utils import timezone

from core.exceptions import ApplicationError
from judgments import sql, tallies
from judgments.models import RESPONSES, Assignment, Judgment, Trial, Worker
from studies.collection import train_vote_budget, votes_range
from studies.models import Item, Study


def open_leases(*, study: Study) -> dict:
    """item id -> open leases counted from the trials (unanswered test trials of started assignments):
    what each item's n_open must equal. The engine reads n_open; this is the check."""
    return dict(
        Trial.objects.filter(
            assignment__study=study,
            assignment__status=Assignment.Status.STARTED,
            kind=Trial.Kind.TEST,
            answered=False,
        )
        .order_by()
        .values_list("item_id")
        .annotate(c=Count("pk"))
        .values_list("item_id", "c")
    )


def split_votes_needed(config: dict, split: str, n_items: int, train_budget: int | None) -> int:
    """Judgments a split is due in all: items x count, or for train the study's train-vote budget over its
    budgeted items (a pool's budget, or every train item)."""
    if split == Item.Split.TRAIN:
        return train_vote_budget(config, n_items if train_budget is None else train_budget)
    return n_items * votes_range(config, split)[0]


TALLY_KEYS = ("n", "tests", "sentinels", "right", "firsts", "flagged")


def study_tallies(*, study: Study, worker_ids: list | None = None) -> dict:
    """worker id -> counts of their judgments in the study: n (practice aside), tests, sentinels, right
    (sentinels answered right), firsts (practice aside, the first response key), flagged (timing-flagged,
    any kind). Summed from the counters each answer keeps on its assignment (judgments.tallies): one GROUP
    BY over the study's HITs, never its judgments. The study's totals (study_stats), the QC histograms
    (worker_shares) and the workers' order and counts (worker_stats) all derive from it; pass it to each.
    `worker_ids`: those workers' counts only."""
    assignments = Assignment.objects.filter(study=study)
    if worker_ids is not None:  # some workers only (one worker's row after a review)
        assignments = assignments.filter(worker_id__in=worker_ids)
    sums = {key: Sum(field) for key, field in tallies.FIELDS.items()}
    rows = (
        assignments.order_by().values("worker_id").annotate(**sums).values_list("worker_id", *tallies.FIELDS)
    )
    out = {}
    for worker_id, *counts in rows:
        row = dict(zip(tallies.FIELDS, counts, strict=True))
        out[worker_id] = {"n": row["tests"] + row["sentinels"], **row}
    return out


def judgments_since(*, study: Study, since) -> int:
    """The study's judgments (practice aside) stored at or after `since`: a range of the judgments' time
    index, so its cost follows the collection's rate over the window, not the study's size."""
    return (
        Judgment.objects.filter(assignment__study=study, created_at__gte=since)
        .exclude(kind=Trial.Kind.PRACTICE)
        .count()
    )


def study_stats(*, study: Study, tallies: dict | None = None) -> dict:
    """Progress and QC summary: items by role, judgment coverage against the targets, workers, rates.
    `tallies`: study_tallies, when the caller holds them."""
    config = study.collection
    complete = Q(active=True, n_judgments__gte=F("n_target"))
    # one pass over the study's items for the coverage of each split and the items by role; it counts
    # columns of item_tally_idx only (not the pk), so that PostgreSQL answers it from the index
    rows = {
        (role, split): (n, accepted, done)
        for role, split, n, accepted, done in Item.objects.filter(study=study)
        .order_by()
        .values_list("role", "split")
        .annotate(n=Count("*"), accepted=Sum("n_judgments"), done=Count("n_target", filter=complete))
    }
    coverage = {}
    for split in Item.Split.values:
        n, accepted, done = rows.get((Item.Role.TEST.value, split), (0, 0, 0))
        if n:
            coverage[split] = {
                # a candidate pool serves its budget of train items (judgments.pool)
                "items": n,
                "target_per_item": config["judgments_per_item"].get(split, max(votes_range(config, split))),
                "accepted": accepted or 0,
                "needed": split_votes_needed(config, split, n, study.train_budget),
                "complete_items": done,
            }
    roles: dict = {}
    for (role, _), (n, _, _) in rows.items():
        roles[role] = roles.get(role, 0) + n
    by_status = dict(Assignment.objects.filter(study=study).values_list("status").annotate(n=Count("pk")))
    tallies = study_tallies(study=study) if tallies is None else tallies
    agg = {key: sum(t[key] for t in tallies.values()) for key in TALLY_KEYS}
    submitted = Assignment.objects.filter(
        study=study, status__in=[Assignment.Status.SUBMITTED, Assignment.Status.REJECTED]
    )
    return {
        "items": {
            "test": roles.get("test", 0),
            "sentinel": roles.get("sentinel", 0),
            "practice": roles.get("practice", 0),
        },
        "coverage": coverage,
        "judgments": agg["n"],
        "test_judgments": agg["tests"],
        "accepted_judgments": sum(c["accepted"] for c in coverage.values()),
        "judgments_last_hour": judgments_since(study=study, since=timezone.now() - timedelta(hours=1)),
        "timing_flagged": agg["flagged"],
        "sentinel_accuracy": agg["right"] / agg["sentinels"] if agg["sentinels"] else None,
        "workers": Assignment.objects.filter(study=study).values("worker").distinct().count(),
        "assignments": {status: by_status.get(status, 0) for status in Assignment.Status.values},
        "excluded_assignments": submitted.filter(excluded=True).count(),
        "excluded_workers": submitted.filter(excluded=True).values("worker").distinct().count(),
    }


WORKERS_PER_PAGE = 50


def worker_stats(
    *, study: Study, offset: int = 0, limit: int | None = None, worker_id=None, tallies: dict | None = None
) -> list[dict]:
    """Per worker: judgments, sentinel accuracy, side bias (share of the first response key), median
    response time, agreement with the majority of the other workers on shared test items, exclusions, and
    the researcher's review (judgments.reviews: approved / rejected with its reason, or None). A worker who
    holds a HIT but has answered nothing yet (practice aside) is listed too, with 0 judgments, so that they
    can be reviewed before they answer. Ordered by judgments (most first), then hash; `offset`/`limit`
    select a page, `worker_id` one worker; `tallies`: study_tallies, when the caller holds them.

    Everything is computed by the database: a page costs five queries whatever the study's size (each
    worker's counts, one GROUP BY shared with the page's other reads through `tallies`; the study's workers,
    sorted here by those counts; the page's exclusions and reviews; its medians; its agreement). Python
    only sorts the workers, divides the counts and averages the one or two middle response times of each.
    (Counts per worker as correlated subqueries cost 4 s for a page of 50 at 500k judgments.)"""
    first = RESPONSES[study.kind][0]
    workers = Worker.objects.filter(pk__in=Assignment.objects.filter(study=study).values("worker_id"))
    if worker_id is not None:
        page = list(workers.filter(pk=worker_id).values_list("pk", flat=True))
        tallies = study_tallies(study=study, worker_ids=page)
    else:
        tallies = study_tallies(study=study) if tallies is None else tallies
        stop = None if limit is None else offset + limit
        page = _worker_order(workers=workers, tallies=tallies)[offset:stop]
    if not page:
        return []
    excluded = (
        Assignment.objects.filter(study=study, worker=OuterRef("pk"), excluded=True)
        .order_by()
        .values("worker")
        .annotate(c=Count("pk"))
        .values("c")
    )
    rows = (
        Worker.objects.filter(pk__in=page)
        .annotate(
            n_excluded=Coalesce(Subquery(excluded), 0),
            review=FilteredRelation("reviews", condition=Q(reviews__study=study)),
        )
        .values(
            "pk",
            "external_hash",
            "is_simulated",
            "n_excluded",
            "review__decision",
            "review__reason",
            "review__decided_at",
        )
    )
    by_id = {r["pk"]: r for r in rows}
    medians = _median_rt(study=study, worker_ids=page)
    agreement = _majority_agreement(study=study, worker_ids=page)
    out = []
    none = dict.fromkeys(TALLY_KEYS, 0)
    for pk in page:
        r, t = by_id[pk], tallies.get(pk, none)
        n = t["n"]
        agree, total = agreement.get(pk, (0, 0))
        out.append(
            {
                "worker": r["external_hash"][:16],
                "simulated": r["is_simulated"],
                "judgments": n,
                "sentinel_accuracy": t["right"] / t["sentinels"] if t["sentinels"] else None,
                f"fraction_{first}": t["firsts"] / n if n else None,
                "median_rt_ms": medians.get(pk),
                "majority_agreement": agree / total if total else None,
                "excluded_assignments": r["n_excluded"],
                "review": r["review__decision"],
                "review_reason": r["review__reason"] or "",
                "reviewed_at": r["review__decided_at"],
            }
        )
    return out


def _worker_order(*, workers, tallies: dict) -> list:
    """The ids of `workers` by judgments in the study (practice aside; most first), then hash: the counts
    come from study_tallies, the order from sorting the study's workers (thousands at most) here. A count
    per worker as a correlated subquery ran once per worker over the judgments (5 s at 500k judgments)."""
    rows = workers.values_list("pk", "external_hash")
    n = {pk: t["n"] for pk, t in tallies.items()}
    return [pk for pk, _ in sorted(rows, key=lambda row: (-n.get(row[0], 0), row[1]))]


def worker_shares(*, study: Study, tallies: dict | None = None) -> list[dict]:
    """The two shares the dashboard's QC histograms draw, for every worker with judgments in the study (from
    study_tallies: no per-worker medians or agreement): {"sentinel_accuracy", "fraction_<first key>"}, the
    same values as worker_stats gives them. Workers without judgments are left out (worker_stats gives
    them None, which a histogram skips)."""
    first = RESPONSES[study.kind][0]
    tallies = study_tallies(study=study) if tallies is None else tallies
    return [
        {
            "sentinel_accuracy": t["right"] / t["sentinels"] if t["sentinels"] else None,
            f"fraction_{first}": t["firsts"] / t["n"],
        }
        for t in tallies.values()
        if t["n"]
    ]


def worker_page_number(*, value: str | None) -> int:
    """The ?page= of a workers table: absent means 1; anything but a positive integer (at most 9 digits)
    is refused with a message (400), never a 500."""
    if value in (None, ""):
        return 1
    if not (value.isascii() and value.isdigit() and len(value) <= 9 and int(value) >= 1):
        raise ApplicationError("page must be a positive whole number", extra={"field": "page"})
    return int(value)


def worker_stats_page(
    *, study: Study, page: int = 1, per_page: int = WORKERS_PER_PAGE, tallies: dict | None = None
) -> dict:
    """One page of worker_stats: {"count", "page", "pages", "per_page", "results"}. A page past the last
    gives the last (and page < 1 the first), so that a stale link still shows workers."""
    count = Assignment.objects.filter(study=study).values("worker_id").distinct().count()
    pages = max(1, -(-count // per_page))
    page = min(max(1, page), pages)
    results = worker_stats(study=study, offset=(page - 1) * per_page, limit=per_page, tallies=tallies)
    return {"count": count, "page": page, "pages": pages, "per_page": per_page, "results": results}


def _median_rt(*, study: Study, worker_ids: list) -> dict:
    """worker id -> median response time of their non-practice judgments in the study, as
    statistics.median gives it (the mean of the two middle values for an even count). PostgreSQL has
    percentile_cont but SQLite has no median, so the portable form is used on both: the database numbers
    each worker's judgments by response time (window functions) and returns only the one or two middle
    rows of each worker; their mean is taken here."""
    rows = (
        Judgment.objects.filter(worker_id__in=worker_ids, assignment__study=study)
        .exclude(kind=Trial.Kind.PRACTICE)
        .order_by()
        .annotate(
            rn=Window(RowNumber(), partition_by=[F("worker_id")], order_by=[F("rt_ms").asc()]),
            cnt=Window(Count("pk"), partition_by=[F("worker_id")]),
        )
        .filter(Q(rn=(F("cnt") + 1) / 2) | Q(rn=(F("cnt") + 2) / 2))
        .values_list("worker_id", "rt_ms")
    )
    middle: dict = defaultdict(list)
    for worker, rt in rows:
        middle[worker].append(rt)
    out = {}
    for worker, values in middle.items():
        values.sort()
        out[worker] = values[0] if len(values) == 1 else (values[0] + values[1]) / 2
    return out


def _majority_agreement(*, study: Study, worker_ids: list) -> dict:
    """worker id -> (agreeing, counted) over their test judgments in the study: whether their choice is the
    majority choice of the OTHER workers' votes on the same item. Votes are the test judgments of
    non-excluded assignments; the judgment's own vote is taken out (when it counted), and ties are not
    counted. `others` = (votes for choice 1) - (votes for choice 0) without their own: a tie at 0, and they
    agree when its sign is their choice's (the old Counter definition compared exactly these two counts).

    Hand-written SQL, portable to PostgreSQL and SQLite: the ORM can only give each judgment's vote count
    as a correlated subquery, which ran once per judgment of the page (2 s for a page of 50 workers at 100k
    judgments); here the votes of the page's items are counted once, in one grouped pass, and joined."""
    if not worker_ids:
        return {}
    judgment, assignment = (m._meta.db_table for m in (Judgment, Assignment))
    pk = Worker._meta.pk
    placeholders = ", ".join(["%s"] * len(worker_ids))
    sql = f"""
        WITH mine AS (
            SELECT j.worker_id, j.item_id, j.choice,
                   CASE WHEN a.excluded = %s AND j.choice = 1 THEN 1
                        WHEN a.excluded = %s AND j.choice = 0 THEN -1 ELSE 0 END AS own
            FROM {judgment} j
            JOIN {assignment} a ON a.id = j.assignment_id
            WHERE a.study_id = %s AND j.kind = %s AND j.worker_id IN ({placeholders})
        ), votes AS (
            SELECT v.item_id,
                   SUM(CASE WHEN v.choice = 1 THEN 1 WHEN v.choice = 0 THEN -1 ELSE 0 END) AS d
            FROM {judgment} v
            JOIN {assignment} va ON va.id = v.assignment_id
            WHERE v.kind = %s AND va.excluded = %s AND v.item_id IN (SELECT item_id FROM mine)
            GROUP BY v.item_id
        ), margins AS (
            SELECT m.worker_id, m.choice, COALESCE(votes.d, 0) - m.own AS others
            FROM mine m LEFT JOIN votes ON votes.item_id = m.item_id
        )
        SELECT worker_id,
               SUM(CASE WHEN (others > 0 AND choice <> 0) OR (others < 0 AND choice = 0) THEN 1 ELSE 0 END),
               SUM(CASE WHEN others <> 0 THEN 1 ELSE 0 END)
        FROM margins GROUP BY worker_id
    """
    params = [
        False,
        False,
        Study._meta.pk.get_db_prep_value(study.pk, connection),
        Trial.Kind.TEST.value,
        *(pk.get_db_prep_value(w, connection) for w in worker_ids),
        Trial.Kind.TEST.value,
        False,
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    out = {}
    for worker, agree, total in rows:
        out[pk.to_python(worker)] = (int(agree), int(total))
    return out


IMAGE_SLOTS = {"2afc": ("left", "ref", "right"), "jnd": ("first", "second")}


def practice_answer(*, kind: str, expected: str, swap: bool) -> str | None:
    """A known-answer item's answer as the screen shows it (2AFC: the side the expected patch is on under
    `swap`; JND: same / different), or None for an item without one. Practice trials carry it."""
    if not expected:
        return None
    if kind == "2afc":
        return "left" if (expected == "p0") != swap else "right"
    return expected


def image_url(*, token: str, trial_id: str, slot: str) -> str:
    """An image's URL for the annotator: opaque per assignment, trial and screen slot (never the content
    hash of the file, so identical images do not have identical URLs)."""
    return f"/api/v1/assignments/{token}/trials/{trial_id}/{slot}/"


def slot_image(*, kind: str, item: Item, swap: bool, slot: str) -> str | None:
    """The media-relative file shown in `slot` of a trial (None: no such slot for the study's kind)."""
    if slot not in IMAGE_SLOTS[kind]:
        return None
    if slot == "ref":
        return item.ref_image
    first, second = (item.p1_image, item.p0_image) if swap else (item.p0_image, item.p1_image)
    return first if slot in ("left", "first") else second


def trial_image(*, token: str, trial_id: str, slot: str) -> str | None:
    """The file behind an annotator's image URL, found by one indexed query (trial public id, joined to its
    assignment, checked against the token, study kind and item); None when the URL names nothing live."""
    trial = (
        Trial.objects.select_related("assignment__study", "item")
        .only(
            "swap",
            "assignment__token",
            "assignment__status",
            "assignment__study__kind",
            "item__ref_image",
            "item__p0_image",
            "item__p1_image",
        )
        .filter(
            public_id=trial_id,
            assignment__token=token,
            assignment__status__in=(Assignment.Status.STARTED, Assignment.Status.SUBMITTED),
        )
        .first()
    )
    if trial is None:
        return None
    return slot_image(kind=trial.assignment.study.kind, item=trial.item, swap=trial.swap, slot=slot)


def assignment_trials(*, assignment: Assignment, trials: list[Trial] | None = None) -> list[dict]:
    """What an annotator's page needs, and nothing more: opaque trial ids, image URLs by screen position
    (image_url: per trial and slot, bound to the token; no content hash), answers only for practice
    trials. No item ids, distortion names, categories or p0/p1 labels.
    `trials`: the assignment's trials with their items, when the caller holds them (a start just made
    them); otherwise one query reads them."""
    kind = assignment.study.kind
    token = assignment.token
    if trials is None:  # plain rows, not model instances: a completion reads every trial of the HIT
        rows = sql.execute(
            'SELECT t.public_id, t."position", t.kind, t.answered, t.swap, i.expected '
            f"FROM {Trial._meta.db_table} t JOIN {Item._meta.db_table} i ON i.id = t.item_id "
            'WHERE t.assignment_id = %s ORDER BY t."position"',
            [sql.prep(Trial, "assignment_id", assignment.pk)],
        )
    else:
        rows = [(t.public_id, t.position, t.kind, t.answered, t.swap, t.item.expected) for t in trials]
    out = []
    for public_id, position, trial_kind, answered, swap, expected in rows:
        entry = {
            "id": public_id,
            "position": position,
            "practice": trial_kind == Trial.Kind.PRACTICE,
            "answered": bool(answered),  # (SQLite's rows hold 0 and 1)
            "images": {
                slot: image_url(token=token, trial_id=public_id, slot=slot) for slot in IMAGE_SLOTS[kind]
            },
        }
        answer = practice_answer(kind=kind, expected=expected, swap=swap)
        if trial_kind == Trial.Kind.PRACTICE and answer:
            entry["answer"] = answer
        out.append(entry)
    return out
