"""Paying only real completions. The completion code is one per study (Prolific expects a fixed code), so
anyone who learns it can claim a completion without doing the work. The researcher approves from this list
instead: every submitted (or later rejected) assignment with the platform's own handle for the submission
(Prolific SESSION_ID, MTurk assignmentId; never the worker id, which is stored only as a salted hash), its
status, whether QC excluded it and why. `approve` is true for submitted assignments QC kept.

GET /api/v1/studies/<id>/completions/ (JSON), `?format=csv` (or Accept: text/csv) for a spreadsheet.
"""

from __future__ import annotations

import csv
import io

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from judgments.models import Assignment, CrowdPlatform
from studies.apis import owned_study
from studies.models import Study

COLUMNS = (
    "assignment",
    "platform",
    "session_id",
    "platform_study",
    "status",
    "excluded",
    "reasons",
    "approve",
    "submitted_at",
    "n_answered",
    "n_trials",
)
# the platform_info keys that name the submission (to approve or reject) and the platform's study / HIT
SESSION_KEY = {CrowdPlatform.PROLIFIC: "session_id", CrowdPlatform.MTURK: "assignment_id"}
STUDY_KEY = {CrowdPlatform.PROLIFIC: "study_id", CrowdPlatform.MTURK: "hit_id"}


def study_completions(*, study: Study) -> list[dict]:
    rows = (
        Assignment.objects.filter(
            study=study, status__in=[Assignment.Status.SUBMITTED, Assignment.Status.REJECTED]
        )
        .order_by("submitted_at", "id")
        .values(
            "id",
            "platform",
            "platform_info",
            "status",
            "excluded",
            "qc",
            "submitted_at",
            "n_answered",
            "n_trials",
        )
    )
    out = []
    for a in rows.iterator():
        info = a["platform_info"] if isinstance(a["platform_info"], dict) else {}
        qc = a["qc"] if isinstance(a["qc"], dict) else {}
        out.append(
            {
                "assignment": str(a["id"]),
                "platform": a["platform"],
                "session_id": str(info.get(SESSION_KEY.get(a["platform"], ""), "") or ""),
                "platform_study": str(info.get(STUDY_KEY.get(a["platform"], ""), "") or ""),
                "status": a["status"],
                "excluded": a["excluded"],
                "reasons": [str(r) for r in qc.get("reasons", [])],
                "approve": a["status"] == Assignment.Status.SUBMITTED and not a["excluded"],
                "submitted_at": a["submitted_at"].isoformat() if a["submitted_at"] else None,
                "n_answered": a["n_answered"],
                "n_trials": a["n_trials"],
            }
        )
    return out


def _cell(value) -> str:
    """A CSV cell a spreadsheet will not run: ids come from crowd links, so a leading = + - @ is defused."""
    if isinstance(value, list):
        value = "; ".join(value)
    text = "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


class CompletionsCsvRenderer(BaseRenderer):
    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        if isinstance(data, list):
            writer.writerow(COLUMNS)
            writer.writerows([_cell(row.get(c)) for c in COLUMNS] for row in data)
        else:  # an error body {"message", "extra"}
            writer.writerow(["message"])
            writer.writerow([_cell((data or {}).get("message", ""))])
        return buffer.getvalue().encode(self.charset)


class StudyCompletionsApi(APIView):
    """Submitted assignments with their platform submission id (Prolific SESSION_ID, MTurk assignmentId),
    status, QC exclusion and reasons: approve on the platform only the rows with `approve` true. JSON, or
    CSV with `?format=csv`."""

    renderer_classes = [JSONRenderer, CompletionsCsvRenderer]

    @extend_schema(
        responses=inline_serializer(
            "Completion",
            {
                "assignment": serializers.UUIDField(),
                "platform": serializers.CharField(),
                "session_id": serializers.CharField(help_text="Prolific SESSION_ID or MTurk assignmentId"),
                "platform_study": serializers.CharField(help_text="Prolific STUDY_ID or MTurk HITId"),
                "status": serializers.CharField(),
                "excluded": serializers.BooleanField(),
                "reasons": serializers.ListField(child=serializers.CharField()),
                "approve": serializers.BooleanField(),
                "submitted_at": serializers.DateTimeField(allow_null=True),
                "n_answered": serializers.IntegerField(),
                "n_trials": serializers.IntegerField(),
            },
            many=True,
        )
    )
    def get(self, request, study_id, format=None):
        study = owned_study(request, study_id)
        response = Response(study_completions(study=study))
        if (
            getattr(request, "accepted_renderer", None) is not None
            and request.accepted_renderer.format == "csv"
        ):
            response["Content-Disposition"] = f'attachment; filename="completions-{study.pk}.csv"'
        return response
