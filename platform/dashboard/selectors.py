"""Read-only data for the researcher dashboard: progress, QC and metric-vs-human agreement."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta

from django.db.models import Count
from django.db.models.functions import TruncHour
from django.utils import timezone

from dashboard import charts
from judgments.models import Judgment, Trial
from judgments.selectors import study_stats, worker_stats
from studies.models import Study
from training.models import Evaluation
from training.selectors import models_panel


def judgments_per_hour(*, study: Study, hours: int = 24) -> list[tuple[str, float]]:
    now = timezone.now().replace(minute=0, second=0, microsecond=0)
    since = now - timedelta(hours=hours - 1)
    rows = dict(
        Judgment.objects.filter(item__study=study, created_at__gte=since)
        .exclude(kind=Trial.Kind.PRACTICE)
        .annotate(hour=TruncHour("created_at"))
        .values_list("hour")
        .annotate(n=Count("pk"))
    )
    out = []
    for h in range(hours):
        hour = since + timedelta(hours=h)
        out.append((hour.strftime("%H:00"), float(sum(n for k, n in rows.items() if k == hour))))
    return out


def latest_evaluations(*, study: Study) -> list[Evaluation]:
    last = (
        Evaluation.objects.filter(study=study).order_by("-created_at").values_list("run", flat=True).first()
    )
    return list(Evaluation.objects.filter(study=study, run=last)) if last else []


def _two_afc_chart(two: list, ceiling: dict, split: str) -> tuple:
    """The 2AFC scores per metric and category with their CIs, against the human ceiling."""
    groups = sorted({r.category for r in two}, key=lambda c: (c == "all", c))
    series: dict = defaultdict(dict)
    for r in sorted(two, key=lambda r: r.metric):
        series[r.metric][r.category] = (r.score, r.ci_low, r.ci_high)
    low = min(0.5, max(0.0, round(min(min(r.score, r.ci_low or r.score) for r in two) - 0.05, 1)))
    return (
        "2AFC agreement with humans (" + split + ", 95% bootstrap CI; dashed: human ceiling)",
        charts.score_chart(
            groups,
            dict(series),
            ceiling=ceiling,
            low=low,
            title=f"2AFC score per metric and category, {split} split",
        ),
    )


def _jnd_chart(jnd: list) -> tuple:
    """JND mean average precision per metric and category, with CIs."""
    groups = sorted({r.category for r in jnd})
    series: dict = defaultdict(dict)
    for r in jnd:
        series[r.metric][r.category] = (r.score, r.ci_low, r.ci_high)
    return (
        "JND mean average precision",
        charts.score_chart(groups, dict(series), title="JND mAP", low=0.0, high=1.0),
    )


def _learning_curve_chart(study: Study, split: str) -> tuple | None:
    """Each metric's overall score per evaluation run against the judgments it saw (None before any)."""
    curve: dict = defaultdict(list)
    for r in Evaluation.objects.filter(
        study=study, measure__in=["2afc", "jnd_map"], category="all", split=split
    ).order_by("created_at"):
        curve[r.metric].append((float(r.n_judgments), r.score))
    if not curve:
        return None
    return (
        "Learning curve: agreement as judgments accrued",
        charts.line_chart(
            dict(curve),
            title="Agreement vs judgments",
            x_label="judgments collected",
            y_label="score",
        ),
    )


def agreement_charts(*, study: Study) -> dict:
    """2AFC score per metric per category with CIs and the human ceiling; JND mAP; the learning curve
    (overall 2AFC score of each metric per evaluation run against the judgments it saw)."""
    rows = latest_evaluations(study=study)
    out: dict = {"has_data": bool(rows), "tables": [], "charts": []}
    if not rows:
        return out
    split = "val" if any(r.split == "val" for r in rows) else rows[0].split
    two = [r for r in rows if r.measure == "2afc" and r.split == split]
    ceiling = {r.category: r.score for r in rows if r.measure == "ceiling" and r.split == split}
    if two:
        out["charts"].append(_two_afc_chart(two, ceiling, split))
        out["tables"].append(sorted(two, key=lambda r: (r.category, -r.score)))
    jnd = [r for r in rows if r.measure == "jnd_map"]
    if jnd:
        out["charts"].append(_jnd_chart(jnd))
        out["tables"].append(sorted(jnd, key=lambda r: (r.category, -r.score)))
    curve = _learning_curve_chart(study, split)
    if curve is not None:
        out["charts"].append(curve)
    out["evaluated_at"] = rows[0].created_at
    out["n_judgments"] = rows[0].n_judgments
    return out


def dashboard_for(*, study: Study) -> dict:
    stats = study_stats(study=study)
    workers = worker_stats(study=study)
    first = "fraction_left" if study.kind == "2afc" else "fraction_same"
    coverage = [
        (
            f"{split}: {c['accepted']}/{c['needed']}",
            100.0 * c["accepted"] / c["needed"] if c["needed"] else 0.0,
        )
        for split, c in stats["coverage"].items()
    ]
    progress_charts = [
        (
            "Judgments collected against the target",
            charts.bar_chart(coverage, title="Coverage by split", unit="%", max_value=100),
        ),
        (
            "Judgments per hour (last 24 hours)",
            charts.column_chart(judgments_per_hour(study=study), title="Judgments per hour"),
        ),
    ]
    qc_charts = [
        (
            "Sentinel accuracy per worker",
            charts.histogram(
                [w["sentinel_accuracy"] for w in workers if w["sentinel_accuracy"] is not None],
                title="Workers by sentinel accuracy",
            ),
        ),
        (
            "Side bias per worker (share of " + first.split("_")[1] + ")",
            charts.histogram([w[first] for w in workers], title="Workers by side bias"),
        ),
    ]
    return {
        "stats": stats,
        "workers": workers,
        "side_key": first,
        "progress_charts": progress_charts,
        "qc_charts": qc_charts,
        "agreement": agreement_charts(study=study),
        "models": models_panel(study=study),
    }
