"""Template filters for the people-and-data panels (workers, exports, models, model cards)."""

from django import template

register = template.Library()

BUSY = ("pending", "running")


@register.filter
def exports_busy(exports) -> bool:
    """Whether any export in the list is queued or running (the exports panel polls while one is)."""
    return any(e.status in BUSY for e in exports)


@register.filter
def export_state(status: str) -> str:
    """The export's state as the page names it: the model's "pending" is "queued"."""
    return "queued" if status == "pending" else status
