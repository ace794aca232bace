from django.db.models import Count, Q, QuerySet

from studies.models import Item, Study


def study_list_public() -> QuerySet[Study]:
    """What the public home page lists: the local demo study only. Real studies are reached through their
    crowd links; listing their ids would let anyone start (and hold) their work."""
    return Study.objects.filter(status=Study.Status.ACTIVE, is_demo=True).annotate(n_items=Count("items"))


def study_list_for(*, user) -> QuerySet[Study]:
    qs = Study.objects.annotate(
        n_items=Count("items"), n_sentinels=Count("items", filter=Q(items__role=Item.Role.SENTINEL))
    )
    if user.is_superuser:
        return qs
    return qs.filter(owner=user)
