"""{% load demo %}{% cnn_pool_progress %}: the CNN pool's progress box (frontend/templates/_cnn_pool.html)."""

from django import template

from studies.selectors import cnn_pool_progress as progress

register = template.Library()


@register.inclusion_tag("_cnn_pool.html", takes_context=True)
def cnn_pool_progress(context) -> dict:
    """The box; a failure's message (an exception's text, paths included) is shown to staff only."""
    user = getattr(context.get("request"), "user", None)
    return {"pool": progress(), "show_error": bool(user and user.is_staff)}
