"""Read-only data for the researcher dashboard: progress, QC and metric-vs-human agreement."""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from datetime import timedelta

from django.core.cache import cache
from django.db.models import Count, OuterRef, QuerySet, Subquery, Sum
from django.db.models.functions import TruncHour
from django.utils import timezone

from dashboard import charts
from dashboard.rules import exclusion_rule_text, timing_rule_text
from judgments.models import Judgment, Trial
from judgments.pool import UNIFORM, item_draw, pool_status
from judgments.selectors import split_votes_needed, study_stats, study_tallies, worker_shares
from judgments.stopping import vote_budget_left
from studies.collection import votes_range
from studies.imports import study_import_running
from studies.models import Item, Study
from training.models import Evaluation
from training.selectors import models_panel

logger = logging.getLogger(__name__)


def study_progress(*, studies) -> dict:
    """Per study id: accepted test judgments, the number needed (items x target per split) and their
    share, in one query for the whole list (the same sums as judgments.selectors.study_stats)."""
    studies = list(studies)
    rows = (
        Item.objects.filter(study__in=studies, role=Item.Role.TEST)
        .values_list("study_id", "split")
        .annotate(items=Count("*"), accepted=Sum("n_judgments"))
    )
    by_id = {s.pk: s for s in studies}
    out = {s.pk: {"accepted": 0, "needed": 0, "share": None} for s in studies}
    for study_id, split, items, accepted in rows:
        study = by_id[study_id]
        out[study_id]["accepted"] += accepted or 0
        out[study_id]["needed"] += split_votes_needed(study.collection, split, items, study.train_budget)
    for p in out.values():
        p["share"] = p["accepted"] / p["needed"] if p["needed"] else None
    return out


def study_list_filtered(*, studies: QuerySet[Study], status: str = "") -> QuerySet[Study]:
    """The studies list's rows before paging: optionally one status, newest first, each with its last
    evaluation's time and run (subqueries, so the page costs a constant number of queries)."""
    last = Evaluation.objects.filter(study=OuterRef("pk")).order_by("-created_at")
    if status:
        studies = studies.filter(status=status)
    return studies.annotate(
        last_evaluated_at=Subquery(last.values("created_at")[:1]),
        last_run=Subquery(last.values("run")[:1]),
    ).order_by("-created_at")


def study_list_rows(*, studies) -> list[dict]:
    """One page of the studies list: each study with its progress (accepted of needed judgments), its
    judgments in the last hour and its last evaluation (when, and the best learned metric's overall score).
    Three queries whatever the number of studies."""
    studies = list(studies)
    ids = [s.pk for s in studies]
    progress = study_progress(studies=studies)
    hour_ago = timezone.now() - timedelta(hours=1)
    last_hour = dict(
        Judgment.objects.filter(assignment__study_id__in=ids, created_at__gte=hour_ago)
        .exclude(kind=Trial.Kind.PRACTICE)
        .order_by()
        .values_list("assignment__study_id")
        .annotate(n=Count("pk"))
    )
    runs = [s.last_run for s in studies if getattr(s, "last_run", None)]
    best: dict = {}
    for row in (
        Evaluation.objects.filter(run__in=runs, kind=Evaluation.Kind.TRAINED, category="all")
        .exclude(measure="ceiling")
        .order_by("split", "-score")
        .values("study_id", "metric", "measure", "split", "score")
    ):
        current = best.get(row["study_id"])
        # the validation split when there is one, else the best on any split
        if current is None or (row["split"] == "val" and current["split"] != "val"):
            best[row["study_id"]] = row
        elif row["split"] == current["split"] and row["score"] > current["score"]:
            best[row["study_id"]] = row
    return [
        {
            "study": s,
            "progress": progress[s.pk],
            "last_hour": last_hour.get(s.pk, 0),
            "evaluated_at": getattr(s, "last_evaluated_at", None),
            "best": best.get(s.pk),
        }
        for s in studies
    ]


HOUR_FINAL_AFTER = timedelta(minutes=10)  # an hour that ended this long ago takes no more judgments


def judgments_per_hour(*, study: Study, hours: int = 24) -> list[tuple[str, float]]:
    """The study's judgments (practice aside) per clock hour (UTC) over the last `hours`, oldest first.
    An hour that ended more than HOUR_FINAL_AFTER ago is final (a judgment is timed when its transaction
    stores it, and an answer's transaction lasts milliseconds): its count is read from the cache, or counted
    once and cached. Only the open hour and the last minutes of the one before are counted on every view,
    so a page's cost follows the collection's rate, not the study's size (all 24 hours cost 0.37 s at 500k
    judgments)."""
    now = timezone.now()
    current = now.replace(minute=0, second=0, microsecond=0)
    since = current - timedelta(hours=hours - 1)
    starts = [since + timedelta(hours=h) for h in range(hours)]
    keys = {hour: f"perceptlab:judgments-per-hour:{study.pk}:{hour:%Y%m%d%H}" for hour in starts}
    final = [hour for hour in starts if hour + timedelta(hours=1) <= now - HOUR_FINAL_AFTER]
    try:  # the cache is an optimisation: without it (Redis down) every hour is counted
        cached = cache.get_many([keys[hour] for hour in final])
    except Exception:  # noqa: BLE001 - any cache backend's failure
        logger.warning("judgments per hour: the cache is unavailable; counting every hour", exc_info=True)
        cached = {}
    counts = {hour: cached[keys[hour]] for hour in final if keys[hour] in cached}
    missing = [hour for hour in final if hour not in counts]
    live_from = missing[0] if missing else (final[-1] + timedelta(hours=1) if final else since)
    judgments = Judgment.objects.filter(assignment__study=study, created_at__gte=live_from).exclude(
        kind=Trial.Kind.PRACTICE
    )
    rows = dict(
        judgments.annotate(hour=TruncHour("created_at"))
        .order_by()
        .values_list("hour")
        .annotate(n=Count("pk"))
    )
    counted = {hour: rows.get(hour, 0) for hour in starts if hour >= live_from}
    counts.update(counted)
    done = {keys[hour]: n for hour, n in counted.items() if hour in final}
    if done:
        try:
            cache.set_many(done, timeout=(hours + 1) * 3600)
        except Exception:  # noqa: BLE001
            logger.warning("judgments per hour: could not cache finished hours", exc_info=True)
    return [(hour.strftime("%H:00"), float(counts.get(hour, 0))) for hour in starts]


def latest_evaluations(*, study: Study) -> list[Evaluation]:
    last = (
        Evaluation.objects.filter(study=study).order_by("-created_at").values_list("run", flat=True).first()
    )
    return list(Evaluation.objects.filter(study=study, run=last)) if last else []


def metric_colors(*, study: Study) -> dict[str, str]:
    """One colour per metric the study was ever evaluated with, the same in every chart (sorted names
    take the palette in turn)."""
    names = sorted(
        set(
            Evaluation.objects.filter(study=study).exclude(measure="ceiling").values_list("metric", flat=True)
        )
    )
    return {name: charts.PALETTE[k % len(charts.PALETTE)] for k, name in enumerate(names)}


def _ranked(series: dict) -> dict:
    """Metrics from the best overall score down (the 'all' category, else the mean over categories)."""

    def overall(metric: str) -> float:
        scores = series[metric]
        return scores["all"][0] if "all" in scores else sum(v[0] for v in scores.values()) / len(scores)

    return {metric: series[metric] for metric in sorted(series, key=lambda m: (-overall(m), m))}


def _two_afc_chart(two: list, ceiling: dict, split: str, colors: dict) -> tuple:
    """The 2AFC scores per metric and category with their CIs, against the human ceiling."""
    groups = sorted({r.category for r in two}, key=lambda c: (c == "all", c))
    series: dict = defaultdict(dict)
    for r in sorted(two, key=lambda r: r.metric):
        series[r.metric][r.category] = (r.score, r.ci_low, r.ci_high)
    low = min(0.5, max(0.0, round(min(min(r.score, r.ci_low or r.score) for r in two) - 0.05, 1)))
    top = max([r.ci_high if r.ci_high is not None else r.score for r in two] + list(ceiling.values()))
    high = min(1.0, math.ceil(top * 10 + 0.5) / 10)
    return (
        f"2AFC agreement with humans, {split} split: share of judgments each metric agrees with, in % "
        "(whiskers: 95\u00a0% bootstrap CI; dashed: human ceiling)",
        charts.score_chart(
            groups,
            _ranked(series),
            ceiling=ceiling,
            low=low,
            high=high,
            title=f"2AFC score per metric and category, {split} split",
            colors=colors,
        ),
    )


def _jnd_chart(jnd: list, colors: dict) -> tuple:
    """JND mean average precision per metric and category, with CIs."""
    groups = sorted({r.category for r in jnd})
    series: dict = defaultdict(dict)
    for r in jnd:
        series[r.metric][r.category] = (r.score, r.ci_low, r.ci_high)
    return (
        "JND mean average precision, in % (whiskers: 95\u00a0% bootstrap CI)",
        charts.score_chart(groups, _ranked(series), title="JND mAP", low=0.0, high=1.0, colors=colors),
    )


def _learning_curve_chart(study: Study, split: str, colors: dict) -> tuple | None:
    """Each metric's overall score per evaluation run against the judgments it saw (None before any). A
    study that ran several samplers (adaptive collection) gets one curve of each trained metric per
    sampler, from the sampler its model version trained under."""
    rows = list(
        Evaluation.objects.filter(study=study, measure__in=["2afc", "jnd_map"], category="all", split=split)
        .select_related("model_version")
        .order_by("created_at")
    )
    sampler_of = {
        r.pk: (r.model_version.train_info or {}).get("sampler") for r in rows if r.model_version is not None
    }
    several = len({s for s in sampler_of.values() if s}) > 1
    curve: dict = defaultdict(list)
    for r in rows:
        name = f"{r.metric} ({sampler_of[r.pk]})" if several and sampler_of.get(r.pk) else r.metric
        curve[name].append((float(r.n_judgments), r.score))
    if not curve:
        return None
    return (
        "Learning curve: each metric's overall score (in %) per evaluation, against the judgments it saw",
        charts.line_chart(
            dict(curve),
            title="Agreement vs judgments",
            x_label="judgments collected",
            y_label="score (%)",
            colors=colors,
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
    colors = metric_colors(study=study)
    two = [r for r in rows if r.measure == "2afc" and r.split == split]
    ceiling = {r.category: r.score for r in rows if r.measure == "ceiling" and r.split == split}
    if two:
        out["charts"].append(_two_afc_chart(two, ceiling, split, colors))
        out["tables"].append(sorted(two, key=lambda r: (r.category, -r.score)))
    jnd = [r for r in rows if r.measure == "jnd_map"]
    if jnd:
        out["charts"].append(_jnd_chart(jnd, colors))
        out["tables"].append(sorted(jnd, key=lambda r: (r.category, -r.score)))
    curve = _learning_curve_chart(study, split, colors)
    if curve is not None:
        out["charts"].append(curve)
    out["evaluated_at"] = rows[0].created_at
    out["n_judgments"] = rows[0].n_judgments
    return out


def sampling_panel(*, study: Study) -> dict:
    """Adaptive collection at a glance: the sampler and its uniform share, the pool (size, released,
    budget; None without one), accepted test judgments by the sampler that drew their items (adaptive vs
    uniform), and Bayesian stopping's range, extra votes granted and budget left."""
    config = study.collection
    by_version: dict = defaultdict(int)
    # an item's n_judgments counts its accepted test judgments (excluded and rejected HITs taken back)
    for version, n in (
        Item.objects.filter(study=study, role=Item.Role.TEST)
        .order_by()
        .values_list("sampler_version")
        .annotate(n=Sum("n_judgments"))
    ):
        by_version[item_draw(version, None)[0]] += n or 0
    total = sum(by_version.values())
    adaptive = sum(n for version, n in by_version.items() if version != UNIFORM)
    low, high = votes_range(config, Item.Split.TRAIN)
    stopping = None
    if low < high:
        trains = Item.objects.filter(study=study, role=Item.Role.TEST, split=Item.Split.TRAIN)
        stopping = {
            "range": (low, high),
            **config["stopping"],
            "extra_votes": trains.filter(n_target__gt=low).aggregate(e=Sum("n_target"))["e"] or 0,
            "items_extended": trains.filter(n_target__gt=low).count(),
            "budget_left": vote_budget_left(
                study_id=study.pk, config=config, budget_items=study.train_budget
            ),
        }
        stopping["extra_votes"] -= stopping["items_extended"] * low
    return {
        "sampler": config["sampling"]["sampler"],
        "uniform_share": config["sampling"]["uniform_share"],
        "pool": pool_status(study=study),
        "by_version": sorted(by_version.items()),
        "judgments": total,
        "adaptive_share": adaptive / total if total else None,
        "stopping": stopping,
    }


def dashboard_for(*, study: Study) -> dict:
    tallies = study_tallies(study=study)  # the workers' counts, once for the totals and the QC
    stats = study_stats(study=study, tallies=tallies)
    workers = worker_shares(study=study, tallies=tallies)  # the QC histograms' two shares per worker
    first = "fraction_left" if study.kind == "2afc" else "fraction_same"
    coverage = [
        (
            f"{split}: {c['accepted']} of {c['needed']}",
            c["accepted"] / c["needed"] if c["needed"] else 0.0,
        )
        for split, c in stats["coverage"].items()
    ]
    progress_charts = [
        (
            "Accepted judgments against the target, per split",
            charts.bar_chart(coverage, title="Coverage by split", max_value=1.0, value_format=charts.pct),
        ),
        (
            "Judgments per hour (last 24 hours, UTC)",
            charts.column_chart(
                judgments_per_hour(study=study),
                title="Judgments per hour",
                x_title="hour (UTC)",
                y_title="judgments",
                empty="No judgments in the last 24 hours.",
            ),
        ),
    ]
    config = study.collection
    min_acc = config["exclusion"].get("min_sentinel_accuracy")
    answer = first.split("_")[1]
    qc_charts = [
        (
            "Sentinel accuracy per worker",
            charts.histogram(
                [w["sentinel_accuracy"] for w in workers],
                title="Workers by sentinel accuracy",
                x_title="share of sentinels right",
                marks=[(min_acc, "exclusion threshold")] if min_acc else None,
                empty="No sentinel answers yet.",
            ),
        ),
        (
            f"Side bias per worker (share of “{answer}” answers"
            + ("; 50\u00a0% is unbiased)" if study.kind == "2afc" else ")"),
            charts.histogram(
                [w[first] for w in workers],
                title="Workers by side bias",
                x_title=f"share of “{answer}” answers",
                marks=[(0.5, "unbiased")] if study.kind == "2afc" else None,
            ),
        ),
    ]
    return {
        "stats": stats,
        "tallies": tallies,  # for the page's first workers (worker_stats_page)
        "side_key": first,
        "progress_charts": progress_charts,
        "qc_charts": qc_charts,
        "exclusion_rule": exclusion_rule_text(config=config, kind=study.kind),
        "timing_rule": timing_rule_text(config=config),
        "agreement": agreement_charts(study=study),
        "models": models_panel(study=study),
        "sampling": sampling_panel(study=study),
    }


# --- the study page's build panel and actions (runstudy) -------------------------------------------------
def study_build_state(*, study: Study, roles: dict | None = None) -> dict:
    """What the build panel shows: `phase` building (the engine runs), importing (a zip import is queued or
    running), failed (the build failed: `message`), import_failed (`message`, naming the bad file when the
    job did), or idle; `running` while building or importing, with done / total and `percent` once known
    (None before the first report: an indeterminate bar); the last import's outcome (`last_import`); and the
    study's items by role (`roles`: the caller's count of them, as study_stats gives it)."""
    progress = study.build_progress if isinstance(study.build_progress, dict) else {}
    is_import = progress.get("kind") == "import"
    if roles is None:
        roles = dict(Item.objects.filter(study=study).values_list("role").annotate(n=Count("*")))
    state = {
        "phase": "idle",
        "running": False,
        "done": None,
        "total": None,
        "percent": None,
        "message": "",
        "last_import": progress if is_import and progress.get("state") == "done" else None,
        "items": {role: roles.get(role, 0) for role in Item.Role.values},
        "n_items": sum(roles.values()),
    }
    if study.status == Study.Status.BUILDING:
        state.update(phase="building", running=True)
    elif is_import and study_import_running(study=study):
        state.update(phase="importing", running=True)
    elif study.status == Study.Status.FAILED:
        state.update(phase="failed", message=study.build_error or "the build failed")
    elif is_import and progress.get("state") == "failed":
        state.update(phase="import_failed", message=str(progress.get("error") or "the import failed"))
    if state["running"]:
        done, total = progress.get("done"), progress.get("total")
        if isinstance(done, int) and isinstance(total, int) and total > 0:
            state.update(done=min(done, total), total=total, percent=round(100 * min(done, total) / total))
    return state


def study_actions(*, study: Study, n_test: int, n_judgments: int) -> dict:
    """Which lifecycle buttons apply now (the services' own rules, studies.lifecycle: start a draft or paused
    study that has test items; pause an active one; close any that is not building or closed already;
    retrain and evaluate once there are judgments)."""
    status = study.status
    S = Study.Status
    return {
        "start": status in (S.DRAFT, S.PAUSED) and n_test > 0,
        "pause": status == S.ACTIVE,
        "close": status not in (S.BUILDING, S.CLOSED),
        "evaluate": status != S.BUILDING and n_judgments > 0,
        "import": status not in (S.BUILDING, S.CLOSED),
        "try": n_test > 0,
    }
