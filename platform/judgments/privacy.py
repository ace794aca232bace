"""What an export publishes about a participant's machine and clock (judgments.jsonl and restore/ alike).

- The display profile stays (viewport, screen size, devicePixelRatio, refresh rate, patch size: the
  experiment's display conditions), but not the browser's user agent, unless the researcher asks for it
  (Export.include_user_agent; the API's `include_user_agent`).
- Client clocks are never published as epoch times (they date each answer to the millisecond, enough to
  match a participant with a platform's submission records): every client timestamp becomes milliseconds
  since the assignment's first one (its first shown trial), rounded to the microsecond. Response times and
  on-screen durations are differences already and stay as they are.

Applying the rule twice changes nothing (the first timestamp of a HIT is 0 then), so a study restored from
an export exports to the same bytes.
"""

from __future__ import annotations

from collections.abc import Iterable

USER_AGENT_KEYS = ("user_agent",)
CLIENT_TIMES = ("client_shown_at", "client_answered_at")


def display_published(display, *, include_user_agent: bool = False):
    if include_user_agent or not isinstance(display, dict):
        return display
    return {k: v for k, v in display.items() if k not in USER_AGENT_KEYS}


def hit_origins(rows: Iterable[dict], key: str = "assignment_id") -> dict[str, float]:
    """assignment id (str) -> its earliest client timestamp, from judgment rows holding CLIENT_TIMES."""
    origins: dict[str, float] = {}
    for row in rows:
        for field in CLIENT_TIMES:
            value = row.get(field)
            if value is not None:
                a = str(row[key])
                origins[a] = min(origins.get(a, value), value)
    return origins


def since_origin(value, origin) -> float | None:
    if value is None or origin is None:
        return None
    return round(value - origin, 3)


def judgment_row_published(
    row: dict, origins: dict[str, float], *, include_user_agent: bool = False, key: str = "assignment_id"
) -> dict:
    """A copy of a judgment row (restore/ attnames) with relative client times and the display rule
    applied."""
    origin = origins.get(str(row[key]))
    out = {**row, **{field: since_origin(row.get(field), origin) for field in CLIENT_TIMES if field in row}}
    if "display" in out:
        out["display"] = display_published(out["display"], include_user_agent=include_user_agent)
    return out
