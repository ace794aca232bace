from celery import shared_task


@shared_task(name="judgments.expire_stale")
def expire_stale() -> int:
    """Housekeeping: mark started assignments past their lease as expired (leases stop counting anyway)."""
    from judgments.assignments import assignments_expire_stale

    return assignments_expire_stale()
