from celery import shared_task


@shared_task(name="exports.export_build", acks_late=True, time_limit=3600, soft_time_limit=3500)
def export_build(export_id: str) -> dict:
    from exports.models import Export
    from exports.services import export_build as build

    try:
        export = Export.objects.select_related("study").get(pk=export_id)
    except Export.DoesNotExist:
        return {"export": export_id, "status": "gone"}
    export = build(export=export)
    return {"export": export_id, "status": export.status, "sha256": export.sha256}
