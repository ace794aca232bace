"""Paying only real completions. The completion code is one per study (Prolific expects a fixed code), so
anyone who learns it can claim a completion without doing the work. The researcher approves from this list
instead: every submitted (or later rejected) assignment with the platform's own handle for the submission
(Prolific SESSION_ID, MTurk assignmentId; never the worker id, which is stored only as a salted hash), its
status, whether QC excluded it and why. `approve` is true for submitted assignments QC kept.

GET /api/v1/studies/<id>/completions/ (JSON, COMPLETIONS_PER_PAGE a page, `?page=`), `?format=csv` (or
Accept: text/csv) for a spreadsheet of every row, streamed (a BAPPS-size study has tens of thousands).
"""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Iterator

from django.http import StreamingHttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from core.apis import paged, paged_schema
from judgments.models import Assignment, CrowdPlatform
from judgments.selectors import worker_page_number
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
COMPLETIONS_PER_PAGE = 500


def _completed(study: Study):
    return Assignment.objects.filter(
        study=study, status__in=[Assignment.Status.SUBMITTED, Assignment.Status.REJECTED]
    )


def study_completions(
    *, study: Study, start: int = 0, stop: int | None = None, chunked: bool = False
) -> Iterator[dict]:
    """The study's submitted and rejected HITs in order of submission, rows [start, stop) of them;
    `chunked`: read through a server-side cursor a chunk at a time (a spreadsheet of every row holds
    memory to a chunk), else in one fetch (a page)."""
    rows = (
        _completed(study)
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
        )[start:stop]
    )
    for a in rows.iterator(chunk_size=2000) if chunked else rows:
        info = a["platform_info"] if isinstance(a["platform_info"], dict) else {}
        qc = a["qc"] if isinstance(a["qc"], dict) else {}
        yield (
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


def study_completions_page(*, study: Study, page: int = 1, per_page: int = COMPLETIONS_PER_PAGE) -> dict:
    """One page of study_completions: {"count", "page", "pages", "per_page", "results"}. A page past the
    last gives the last, as the workers table does."""
    count = _completed(study).count()
    pages = max(1, -(-count // per_page))
    page = min(max(page, 1), pages)
    start = (page - 1) * per_page
    results = list(study_completions(study=study, start=start, stop=start + per_page))
    return {"count": count, "page": page, "pages": pages, "per_page": per_page, "results": results}


def _cell(value) -> str:
    """A CSV cell a spreadsheet will not run: ids come from crowd links, so a leading = + - @ is defused."""
    if isinstance(value, list):
        value = "; ".join(value)
    text = "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _csv_lines(header, rows) -> Iterator[str]:
    """CSV text in pieces of about 64 KiB: the header, then each row of cells (defused: _cell)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for cells in rows:
        writer.writerow([_cell(value) for value in cells])
        if buffer.tell() >= 65536:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def completions_csv(rows) -> Iterator[str]:
    return _csv_lines(COLUMNS, ([row.get(c) for c in COLUMNS] for row in rows))


class CompletionsCsvRenderer(BaseRenderer):
    """Renders the API's errors as CSV; the rows themselves stream (StudyCompletionsApi.get)."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        # only an error body {"message", "extra"} comes here
        return "".join(_csv_lines(["message"], [[(data or {}).get("message", "")]])).encode(self.charset)


class StudyCompletionsApi(APIView):
    """Submitted assignments with their platform submission id (Prolific SESSION_ID, MTurk assignmentId),
    status, QC exclusion and reasons: approve on the platform only the rows with `approve` true. JSON,
    COMPLETIONS_PER_PAGE rows a page (?page=, from 1; in order of submission): {"count", "next",
    "previous", "results"}; a page past the last gives the last. Or every row as CSV with `?format=csv`."""

    renderer_classes = [JSONRenderer, CompletionsCsvRenderer]

    @extend_schema(
        parameters=[OpenApiParameter("page", int, description="page number, from 1 (JSON only)")],
        responses=paged_schema(
            "CompletionsPage",
            inline_serializer(
                "Completion",
                {
                    "assignment": serializers.UUIDField(),
                    "platform": serializers.CharField(),
                    "session_id": serializers.CharField(
                        help_text="Prolific SESSION_ID or MTurk assignmentId"
                    ),
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
            ),
        ),
    )
    def get(self, request, study_id, format=None):
        study = owned_study(request, study_id)
        if (
            getattr(request, "accepted_renderer", None) is not None
            and request.accepted_renderer.format == "csv"
        ):  # every row, streamed as it is read
            pieces = completions_csv(study_completions(study=study, chunked=True))
            # the first piece is read here, so that a database that is down gets the API's 503 (the
            # handlers see the view's exceptions, not the stream's); a failure later cuts the chunked
            # download short, which the client sees as an incomplete transfer
            first = next(pieces)
            response = StreamingHttpResponse(
                itertools.chain([first], pieces), content_type="text/csv; charset=utf-8"
            )
            response["Content-Disposition"] = f'attachment; filename="completions-{study.pk}.csv"'
            return response
        number = worker_page_number(value=request.query_params.get("page"))
        page = study_completions_page(study=study, page=number, per_page=COMPLETIONS_PER_PAGE)
        return Response(paged(request, page))
