"""Template filters for the dashboard: shares as percentages with one decimal, the same as the charts."""

from django import template

from dashboard.charts import pct as _pct

register = template.Library()


@register.filter
def pct(value) -> str:
    """{{ 0.93333|pct }} -> '93.3 %'; None or '' -> '–'."""
    if value is None or value == "":
        return "–"
    return _pct(float(value))


@register.filter
def after_name(reason, name) -> str:
    """A reason that repeats the name it explains ("random: as configured (...)" after "random"), without
    the repetition: {{ trunk.reason|after_name:trunk.used }} -> "as configured (...)"."""
    text, prefix = str(reason or ""), f"{name}: "
    return text[len(prefix) :] if name and text.startswith(prefix) else text
