"""{% load demo %}{% cnn_pool_progress %}: the CNN pool's progress box (frontend/templates/_cnn_pool.html)."""

from django import template

from studies.selectors import cnn_pool_progress as progress

register = template.Library()


@register.inclusion_tag("_cnn_pool.html")
def cnn_pool_progress() -> dict:
    return {"pool": progress()}
