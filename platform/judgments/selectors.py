"""Reads for studies' crowd data: progress, QC and per-worker statistics."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from datetime import timedelta

from django.db.models import Count, Q, Sum
from django.utils import timezone

from judgments.models import Assignment, Judgment, Trial
from judgments.services import RESPONSES
from studies.models import Item, Study


def study_stats(*, study: Study) -> dict:
    """Progress and QC summary: items by role, judgment coverage against the targets, workers, rates."""
    config = study.settings
    targets = config["judgments_per_item"]
    tests = Item.objects.filter(study=study, role=Item.Role.TEST)
    coverage = {}
    for split in Item.Split.values:
        target = targets.get(split, max(targets.values()))
        row = tests.filter(split=split).aggregate(
            items=Count("pk"), accepted=Sum("n_judgments"), complete=Count("pk", filter=Q(n_judgments__gte=target))
        )
        if row["items"]:
            coverage[split] = {"items": row["items"], "target_per_item": target, "accepted": row["accepted"] or 0,
                               "needed": row["items"] * target, "complete_items": row["complete"]}  # fmt: skip
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
    submitted = Assignment.objects.filter(study=study, status__in=[Assignment.Status.SUBMITTED, Assignment.Status.REJECTED])
    return {
        "items": {"test": roles.get("test", 0), "sentinel": roles.get("sentinel", 0), "practice": roles.get("practice", 0)},
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
    response time, agreement with the majority of the other workers on shared test items, exclusions."""
    first = RESPONSES[study.kind][0]
    rows = list(
        Judgment.objects.filter(item__study=study).exclude(kind=Trial.Kind.PRACTICE)
        .values("worker_id", "worker__external_hash", "worker__is_simulated", "item_id", "kind", "choice",
                "response", "correct", "rt_ms", "assignment__excluded")  # fmt: skip
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
    out = []
    for worker_id, items in per.items():
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
        out.append({
            "worker": items[0]["worker__external_hash"][:16],
            "simulated": items[0]["worker__is_simulated"],
            "judgments": len(items),
            "sentinel_accuracy": sum(1 for r in sentinels if r["correct"]) / len(sentinels) if sentinels else None,
            f"fraction_{first}": sum(1 for r in items if r["response"] == first) / len(items),
            "median_rt_ms": statistics.median(r["rt_ms"] for r in items),
            "majority_agreement": agree / total if total else None,
            "excluded_assignments": excluded.get(worker_id, 0),
        })  # fmt: skip
    out.sort(key=lambda w: -w["judgments"])
    return out


def assignment_trials(*, assignment: Assignment, media_url: str, trials: list[Trial] | None = None) -> list[dict]:
    """What an annotator's page needs, and nothing more: opaque trial ids, image URLs by screen position,
    answers only for practice trials. No item ids, distortion names, categories or p0/p1 labels.
    `trials`: the assignment's trials with their items, when the caller holds them (a start just made
    them); otherwise one query reads them."""
    kind = assignment.study.kind
    if trials is None:
        trials = (assignment.trials.select_related("item").order_by("position")
                  .only("assignment", "public_id", "position", "kind", "answered", "swap", "item__ref_image",
                        "item__p0_image", "item__p1_image", "item__expected"))  # fmt: skip  (not the items' records)
    out = []
    for trial in trials:
        item = trial.item
        first, second = (item.p1_image, item.p0_image) if trial.swap else (item.p0_image, item.p1_image)
        entry = {"id": trial.public_id, "position": trial.position, "practice": trial.kind == Trial.Kind.PRACTICE,
                 "answered": trial.answered}  # fmt: skip
        if kind == "2afc":
            entry["images"] = {"left": media_url + first, "ref": media_url + item.ref_image, "right": media_url + second}
        else:
            entry["images"] = {"first": media_url + first, "second": media_url + second}
        if trial.kind == Trial.Kind.PRACTICE and item.expected:
            if kind == "2afc":
                entry["answer"] = "left" if (item.expected == "p0") != trial.swap else "right"
            else:
                entry["answer"] = item.expected
        out.append(entry)
    return out
