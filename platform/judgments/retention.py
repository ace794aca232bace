"""Deleting what we keep about participants once it is no longer needed (docs/platform.md, "What we store
about a participant, and for how long"). `manage.py purge_participant_data` calls it.

For one study, for rows created before a date: browser user agents always go; optionally the whole display
profile, the client clock times (made relative to each HIT, as exports publish them: judgments.privacy) and
the platform session ids of finished assignments (after the platform has paid; the completions list is
empty for them afterwards). Answers, response times, QC outcomes and salted worker hashes stay: they are the
dataset. Idempotent.
"""

from __future__ import annotations

from datetime import datetime

from django.db import transaction

from judgments.models import Assignment, Judgment
from judgments.privacy import CLIENT_TIMES, USER_AGENT_KEYS, hit_origins, since_origin
from studies.models import Study

BATCH = 1000


def participant_data_purge(
    *,
    study: Study,
    before: datetime,
    display: bool = False,
    client_times: bool = False,
    session_ids: bool = False,
) -> dict:
    """Returns counts of changed rows: {"judgments": n, "assignments": m}."""
    judgments = Judgment.objects.filter(assignment__study=study, created_at__lt=before)
    origins = {}
    if client_times:  # each HIT's first client time, from all of its judgments (also those after `before`)
        hits = judgments.values_list("assignment_id", flat=True).distinct()
        rows = Judgment.objects.filter(assignment_id__in=hits).values("assignment_id", *CLIENT_TIMES)
        origins = hit_origins(rows.iterator())
    changed_judgments, changed_assignments = 0, 0
    with transaction.atomic():
        batch = []
        for j in judgments.only("id", "assignment_id", "display", *CLIENT_TIMES).order_by("id").iterator():
            before_values = (j.display, j.client_shown_at, j.client_answered_at)
            if isinstance(j.display, dict):
                j.display = (
                    {} if display else {k: v for k, v in j.display.items() if k not in USER_AGENT_KEYS}
                )
            if client_times:
                origin = origins.get(str(j.assignment_id))
                j.client_shown_at = since_origin(j.client_shown_at, origin)
                j.client_answered_at = since_origin(j.client_answered_at, origin)
            if (j.display, j.client_shown_at, j.client_answered_at) != before_values:
                batch.append(j)
            if len(batch) >= BATCH:
                changed_judgments += _save(batch)
        changed_judgments += _save(batch)
        if session_ids:
            finished = (
                Assignment.objects.filter(study=study, created_at__lt=before)
                .exclude(status=Assignment.Status.STARTED)
                .exclude(platform_info={})
            )
            changed_assignments = finished.update(platform_info={})
    return {"judgments": changed_judgments, "assignments": changed_assignments}


def _save(batch: list) -> int:
    n = len(batch)
    if n:
        Judgment.objects.bulk_update(batch, ["display", *CLIENT_TIMES], batch_size=BATCH)
        batch.clear()
    return n
