"""Reads for studies' crowd data: progress, QC and per-worker statistics."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from datetime import timedelta

from django.db.models import Count, Q, Sum
from django.utils import timezone

from judgments.models import RESPONSES, Assignment, Judgment, Trial, WorkerReview
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


def study_stats(*, study: Study) -> dict:
    """Progress and QC summary: items by role, judgment coverage against the targets, workers, rates."""
    config = study.collection
    targets = config["judgments_per_item"]
    tests = Item.objects.filter(study=study, role=Item.Role.TEST)
    coverage = {}
    for split in Item.Split.values:
        target = targets.get(split, max(targets.values()))
        row = tests.filter(split=split).aggregate(
            items=Count("pk"),
            accepted=Sum("n_judgments"),
            complete=Count("pk", filter=Q(n_judgments__gte=target)),
        )
        if row["items"]:
            coverage[split] = {
                "items": row["items"],
                "target_per_item": target,
                "accepted": row["accepted"] or 0,
                "needed": row["items"] * target,
                "complete_items": row["complete"],
            }
    roles = dict(Item.objects.filter(study=study).values_list("role").annotate(n=Count("pk")))
    by_status = dict(Assignment.objects.filter(study=study).values_list("status").annotate(n=Count("pk")))
    judgments = Judgment.objects.filter(item__study=study)
    hour_ago = timezone.now() - timedelta(hours=1)
    agg = judgments.aggregate(
        total=Count("pk", filter=~Q(kind=Trial.Kind.PRACTICE)),
        tests=Count("pk", filter=Q(kind=Trial.Kind.TEST)),
        last_hour=Count("pk", filter=Q(created_at__gte=hour_ago) & ~Q(kind=Trial.Kind.PRACTICE)),
        sentinels=Count("pk", filter=Q(kind=Trial.Kind.SENTINEL)),
        sentinels_correct=Count("pk", filter=Q(kind=Trial.Kind.SENTINEL, correct=True)),
        flagged=Count("pk", filter=Q(timing_flagged=True)),
    )
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
        "judgments": agg["total"],
        "test_judgments": agg["tests"],
        "accepted_judgments": sum(c["accepted"] for c in coverage.values()),
        "judgments_last_hour": agg["last_hour"],
        "timing_flagged": agg["flagged"],
        "sentinel_accuracy": agg["sentinels_correct"] / agg["sentinels"] if agg["sentinels"] else None,
        "workers": Assignment.objects.filter(study=study).values("worker").distinct().count(),
        "assignments": {status: by_status.get(status, 0) for status in Assignment.Status.values},
        "excluded_assignments": submitted.filter(excluded=True).count(),
        "excluded_workers": submitted.filter(excluded=True).values("worker").distinct().count(),
    }


def worker_stats(*, study: Study) -> list[dict]:
    """Per worker: judgments, sentinel accuracy, side bias (share of the first response key), median
    response time, agreement with the majority of the other workers on shared test items, exclusions, and
    the researcher's review (judgments.reviews: approved / rejected with its reason, or None)."""
    first = RESPONSES[study.kind][0]
    rows = list(
        Judgment.objects.filter(item__study=study)
        .exclude(kind=Trial.Kind.PRACTICE)
        .values(
            "worker_id",
            "worker__external_hash",
            "worker__is_simulated",
            "item_id",
            "kind",
            "choice",
            "response",
            "correct",
            "rt_ms",
            "assignment__excluded",
        )
    )
    votes: dict = defaultdict(Counter)
    for r in rows:
        if r["kind"] == Trial.Kind.TEST and not r["assignment__excluded"]:
            votes[r["item_id"]][r["choice"]] += 1
    per: dict = defaultdict(list)
    for r in rows:
        per[r["worker_id"]].append(r)
    excluded = Counter(
        Assignment.objects.filter(study=study, excluded=True).values_list("worker_id", flat=True)
    )
    reviews = {
        r["worker_id"]: r
        for r in WorkerReview.objects.filter(study=study).values(
            "worker_id", "decision", "reason", "decided_at"
        )
    }
    out = []
    for worker_id, items in per.items():
        review = reviews.get(worker_id)
        sentinels = [r for r in items if r["kind"] == Trial.Kind.SENTINEL]
        agree = total = 0
        for r in items:
            if r["kind"] != Trial.Kind.TEST:
                continue
            others = votes[r["item_id"]].copy()
            if not r["assignment__excluded"]:
                others[r["choice"]] -= 1
            if others[0] != others[1]:
                total += 1
                agree += int((others[1] > others[0]) == bool(r["choice"]))
        out.append(
            {
                "worker": items[0]["worker__external_hash"][:16],
                "simulated": items[0]["worker__is_simulated"],
                "judgments": len(items),
                "sentinel_accuracy": sum(1 for r in sentinels if r["correct"]) / len(sentinels)
                if sentinels
                else None,
                f"fraction_{first}": sum(1 for r in items if r["response"] == first) / len(items),
                "median_rt_ms": statistics.median(r["rt_ms"] for r in items),
                "majority_agreement": agree / total if total else None,
                "excluded_assignments": excluded.get(worker_id, 0),
                "review": review["decision"] if review else None,
                "review_reason": review["reason"] if review else "",
                "reviewed_at": review["decided_at"] if review else None,
            }
        )
    out.sort(key=lambda w: -w["judgments"])
    return out


IMAGE_SLOTS = {"2afc": ("left", "ref", "right"), "jnd": ("first", "second")}


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
    if trials is None:
        trials = (
            assignment.trials.select_related("item")
            .order_by("position")
            .only("assignment", "public_id", "position", "kind", "answered", "swap", "item__expected")
        )
    out = []
    for trial in trials:
        item = trial.item
        entry = {
            "id": trial.public_id,
            "position": trial.position,
            "practice": trial.kind == Trial.Kind.PRACTICE,
            "answered": trial.answered,
            "images": {
                slot: image_url(token=token, trial_id=trial.public_id, slot=slot)
                for slot in IMAGE_SLOTS[kind]
            },
        }
        if trial.kind == Trial.Kind.PRACTICE and item.expected:
            if kind == "2afc":
                entry["answer"] = "left" if (item.expected == "p0") != trial.swap else "right"
            else:
                entry["answer"] = item.expected
        out.append(entry)
    return out
