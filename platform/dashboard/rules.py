"""A study's QC exclusion rule and display timing in words, from its collection settings
(studies.collection), matching what judgments.qc.qc_evaluate applies. The dashboard writes the rule only
through these functions, so it reads the same wherever it appears."""

from __future__ import annotations

from dashboard.charts import pct
from judgments.models import RESPONSES
from studies.collection import sentinels_per_hit

QC_TOLERANCE = 1e-9  # judgments.qc.qc_evaluate excludes when accuracy + 1e-9 < min_sentinel_accuracy


def sentinels_needed(min_accuracy: float, n_sentinels: int) -> int:
    """The fewest right sentinels out of n that pass the rule (n + 1 when none passes)."""
    return next(
        (k for k in range(n_sentinels + 1) if k / n_sentinels + QC_TOLERANCE >= min_accuracy),
        n_sentinels + 1,
    )


def _sentinel_clause(min_acc: float, n: int) -> str:
    if min_acc <= 0:
        return ""
    if n == 0:
        return (
            f"its sentinel accuracy is below {pct(min_acc)} (this study shows no sentinels, "
            "so the sentinel rule never applies)"
        )
    need = sentinels_needed(min_acc, n)
    if need > n:
        return f"its sentinel accuracy is below {pct(min_acc)} (a threshold no assignment reaches)"
    return (
        f"fewer than {need} of its {n} sentinels are right (below {pct(min_acc)}; "
        "a shorter HIT, with fewer sentinels, needs the same share)"
    )


def exclusion_rule_text(*, config: dict, kind: str) -> str:
    """The exclusion rule as one sentence, e.g. 'An assignment is excluded when fewer than 14 of its 15
    sentinels are right (below 93.3 %).' A rule without clauses says so."""
    rule = config.get("exclusion") or {}
    clauses = []
    min_acc = rule.get("min_sentinel_accuracy")
    if min_acc is not None:
        clause = _sentinel_clause(float(min_acc), sentinels_per_hit(config))
        if clause:
            clauses.append(clause)
    max_bias = rule.get("max_side_bias")
    if max_bias is not None:
        first = RESPONSES[kind][0]
        lo, hi = max(0.0, 0.5 - max_bias), min(1.0, 0.5 + max_bias)
        clauses.append(f"its share of “{first}” answers is outside {pct(lo)} to {pct(hi)}")
    min_rt = rule.get("min_median_rt_ms")
    if min_rt is not None:
        clauses.append(f"its median response time is under {min_rt:g} ms")
    if not clauses:
        return "No exclusion rule: every submitted assignment counts."
    return "An assignment is excluded when " + ", or when ".join(clauses) + "."


def timing_rule_text(*, config: dict) -> str:
    """JND display timing in words ('' when the study has no timed display)."""
    timing = config.get("timing") or {}
    if not timing:
        return ""
    names = {"ref_ms": "reference", "gap_ms": "blank", "distorted_ms": "distorted image"}
    shown = ", ".join(f"{names[k]} {timing[k]} ms" for k in names if k in timing)
    return (
        f"Display timing: {shown}. A trial whose measured time is off any of these by more than one "
        "screen frame is flagged (kept, and marked in the export), not excluded."
    )
