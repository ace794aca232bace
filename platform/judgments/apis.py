"""Annotator API. No login: an assignment's secret token (from starting it) authorises its calls. Payloads
never name items, distortions, categories, sentinels or p0/p1; sides are screen positions."""

from __future__ import annotations

import json

from django.conf import settings
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import ParseError
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from core.apis import paged, paged_schema
from core.exceptions import ApplicationError
from core.net import client_ip
from core.parsers import StrictJSONParser, json_body
from core.stimuli import STIMULUS_PATH
from core.storage import stream_response
from core.throttling import AssignmentImageThrottle, AssignmentStartThrottle, AssignmentThrottle
from judgments import sql
from judgments.answers import (
    ANSWER_FIELDS,
    BATCH_MAX,
    BATCH_MAX_BYTES,
    answer_input,
    answer_submit,
    batch_input,
    judgments_submit_batch,
)
from judgments.assignments import (
    N_EXAMPLES,
    Preview,
    assignment_heartbeat,
    assignment_request,
    assignment_return,
)
from judgments.models import Assignment, CrowdPlatform
from judgments.qc import assignment_submit, completion_for
from judgments.reviews import HASH_PREFIX, REASON_MAX, worker_review_set
from judgments.selectors import (
    IMAGE_SLOTS,
    assignment_trials,
    slot_image,
    trial_image,
    worker_page_number,
    worker_stats_page,
)
from studies.apis import owned_study
from studies.models import Item, Study


class JsonOnlyNegotiation(BaseContentNegotiation):
    """The annotator endpoints speak JSON only: skip parsing the Accept header on every answer."""

    def select_parser(self, request, parsers):
        return parsers[0]

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class AnnotatorApi(APIView):
    TOKEN_API_VIEW = True  # core.middleware: the cookie middleware stands aside for these views' paths
    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes = [AssignmentThrottle]
    parser_classes = [StrictJSONParser]
    renderer_classes = [JSONRenderer]
    content_negotiation_class = JsonOnlyNegotiation


class TrialSerializer(serializers.Serializer):
    id = serializers.CharField()
    position = serializers.IntegerField()
    practice = serializers.BooleanField()
    answered = serializers.BooleanField()
    images = serializers.DictField(child=serializers.CharField())
    answer = serializers.CharField(required=False, help_text="practice trials only: the correct response")


class AssignmentOutputSerializer(serializers.Serializer):
    token = serializers.CharField()
    status = serializers.CharField()
    kind = serializers.CharField()
    study = serializers.DictField()
    lease_expires_at = serializers.DateTimeField()
    n_trials = serializers.IntegerField()
    n_answered = serializers.IntegerField()
    next_position = serializers.IntegerField(allow_null=True)
    trials = TrialSerializer(many=True)
    completion = serializers.DictField(allow_null=True)
    worker_id = serializers.CharField(required=False, help_text="anonymous links: the id to send next time")


def _study_public(study: Study) -> dict:
    config = study.collection
    return {
        "id": str(study.pk),
        "name": study.name,
        "kind": study.kind,
        "timing": config["timing"],
        "instructions": config["instructions"],
    }


def assignment_output(assignment: Assignment, trials: list | None = None, **extra) -> dict:
    """The body AssignmentOutputSerializer documents, built directly (plain JSON types and datetimes, which
    the renderer writes as the serializer would): the annotator endpoints skip the serializer's per-field
    overhead on every start and completion. `trials`: a new assignment's trials, held by the caller."""
    trials = assignment_trials(assignment=assignment, trials=trials)
    pending = [t["position"] for t in trials if not t["answered"]]
    completion = completion_for(assignment) if assignment.status == Assignment.Status.SUBMITTED else None
    return {
        "token": assignment.token,
        "status": assignment.status,
        "kind": assignment.study.kind,
        "study": _study_public(assignment.study),
        "lease_expires_at": assignment.lease_expires_at,
        "n_trials": assignment.n_trials,
        "n_answered": sum(1 for t in trials if t["answered"]),
        "next_position": pending[0] if pending else None,
        "trials": trials,
        "completion": completion,
        **extra,
    }


class AssignmentStartApi(AnnotatorApi):
    """Start a HIT in a study, or resume the worker's unfinished one (Prolific and MTurk: the same platform
    session, else 409; anonymous: the worker id the server issued). MTurk preview (assignment_id
    ASSIGNMENT_ID_NOT_AVAILABLE) returns practice examples and creates nothing."""

    throttle_classes = [AssignmentStartThrottle]

    class InputSerializer(serializers.Serializer):
        platform = serializers.ChoiceField(
            choices=[
                CrowdPlatform.PROLIFIC,
                CrowdPlatform.MTURK,
                CrowdPlatform.ANONYMOUS,
                CrowdPlatform.SIMULATED,
            ],
            help_text="simulated: simulation studies only (manage.py simulate_crowd)",
        )
        worker_id = serializers.CharField(
            required=False,
            allow_blank=True,
            max_length=128,
            help_text="PROLIFIC_PID, MTurk workerId, or the anonymous id",
        )
        consent = serializers.BooleanField()
        study_id = serializers.CharField(
            required=False, allow_blank=True, max_length=256, help_text="Prolific STUDY_ID"
        )
        session_id = serializers.CharField(
            required=False, allow_blank=True, max_length=256, help_text="Prolific SESSION_ID"
        )
        hit_id = serializers.CharField(required=False, allow_blank=True, max_length=256)
        assignment_id = serializers.CharField(required=False, allow_blank=True, max_length=256)
        turk_submit_to = serializers.CharField(required=False, allow_blank=True, max_length=256)

    @extend_schema(
        request=InputSerializer, responses={200: AssignmentOutputSerializer, 201: AssignmentOutputSerializer}
    )
    def post(self, request, study_id):
        study = sql.model_get(Study, study_id)
        if study is None:
            raise Http404("no such study")
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        info = {
            k: v[k]
            for k in ("study_id", "session_id", "hit_id", "assignment_id", "turk_submit_to")
            if v.get(k)
        }
        result, issued_id = assignment_request(
            study=study,
            platform=v["platform"],
            worker_id=v.get("worker_id") or "",
            consent=v["consent"],
            platform_info=info,
            client_ip=client_ip(request),
        )
        if isinstance(result, Preview):
            images = [
                {slot: example_url(study_id=study.pk, n=k, slot=slot) for slot in IMAGE_SLOTS[study.kind]}
                for k in range(result.n_examples)
            ]
            return Response({"preview": True, "study": _study_public(study), "examples": images})
        extra = {"worker_id": issued_id} if issued_id else {}
        code = status.HTTP_201_CREATED if result.created else status.HTTP_200_OK
        return Response(assignment_output(result.assignment, result.trials, **extra), status=code)


def _assignment(token: str) -> Assignment:
    return get_object_or_404(Assignment.objects.select_related("study"), token=token)


class AssignmentDetailApi(AnnotatorApi):
    """The assignment's state, for resuming after a reload."""

    @extend_schema(responses=AssignmentOutputSerializer)
    def get(self, request, token):
        return Response(assignment_output(_assignment(token)))


class AssignmentHeartbeatApi(AnnotatorApi):
    @extend_schema(
        request=None,
        responses=inline_serializer("Heartbeat", {"lease_expires_at": serializers.DateTimeField()}),
    )
    def post(self, request, token):
        assignment = assignment_heartbeat(token=token)
        return Response({"lease_expires_at": assignment.lease_expires_at})


def _answer_serializer_field(field) -> serializers.Field:
    """The OpenAPI description of one answer field (judgments.answers.ANSWER_FIELDS)."""
    extra = {"help_text": field.help} if field.help else {}
    if field.kind == "string":
        if field.min_length > 1:
            extra["min_length"] = field.min_length
        return serializers.CharField(max_length=field.max_length, **extra)
    if field.kind == "number":
        return serializers.FloatField(
            required=field.required,
            allow_null=not field.required,
            min_value=field.low,
            max_value=field.high,
            **extra,
        )
    if field.numbers:
        return serializers.DictField(required=field.required, child=serializers.FloatField(), **extra)
    return serializers.DictField(required=field.required, **extra)


class JudgmentSubmitApi(AnnotatorApi):
    """Store one trial's answer. Send it as soon as the trial ends, with a fresh idempotency key per trial;
    retrying with the same key is safe (200 with the stored answer instead of 201)."""

    # Generated from ANSWER_FIELDS, the definition answer_input and judgment_submit check against.
    InputSerializer = type(
        "InputSerializer",
        (serializers.Serializer,),
        {
            "__qualname__": "JudgmentSubmitApi.InputSerializer",
            "__module__": __name__,
            **{field.name: _answer_serializer_field(field) for field in ANSWER_FIELDS},
        },
    )

    class OutputSerializer(serializers.Serializer):
        trial = serializers.CharField()
        stored = serializers.BooleanField()
        replayed = serializers.BooleanField()
        n_answered = serializers.IntegerField()
        n_trials = serializers.IntegerField()
        correct = serializers.BooleanField(allow_null=True, help_text="practice trials only")

    @extend_schema(request=InputSerializer, responses={200: OutputSerializer, 201: OutputSerializer})
    def post(self, request, token):
        # The hottest endpoint: the body is checked by hand (answer_input; the service checks ranges and
        # sizes) rather than by instantiating InputSerializer; both come from ANSWER_FIELDS.
        v = answer_input(json_body(request))  # request.data, without DRF's machinery (JsonOnlyNegotiation)
        result = answer_submit(token=token, answer=v)
        return _json_response(
            _answer_body(v["trial"], result),
            status.HTTP_201_CREATED if result.created else status.HTTP_200_OK,
        )


def _answer_body(trial: str, result) -> dict:
    """JudgmentSubmitApi.OutputSerializer's body for one stored answer (judgments.answers.SubmitResult)."""
    judgment = result.judgment
    return {
        "trial": trial,
        "stored": True,
        "replayed": not result.created,
        "n_answered": result.n_answered,
        "n_trials": result.n_trials,
        "correct": judgment.correct if judgment.kind == "practice" else None,
    }


def _json_response(body: dict, status_code: int) -> HttpResponse:
    """Written as JSONRenderer writes it (compact, UTF-8), without DRF's Response: its rendering machinery
    cost more than the body on every answer (docs/benchmarks.md, "Where the answer path's CPU goes").
    Errors still come from DRF's exception handler."""
    return HttpResponse(
        json.dumps(body, separators=(",", ":"), ensure_ascii=False),
        content_type="application/json",
        status=status_code,
    )


class JudgmentBatchApi(AnnotatorApi):
    """Store 1-20 answered trials of the HIT in one request and one transaction, each under its own
    idempotency key (a retried batch replays). One refused answer does not stop the others: each gets its
    own result, with the status the single endpoint would answer. The annotator page sends its outbox this
    way. Throttled by answers, not requests: a batch of n counts n."""

    class InputSerializer(serializers.Serializer):
        answers = JudgmentSubmitApi.InputSerializer(many=True, min_length=1, max_length=BATCH_MAX)

    class ResultSerializer(serializers.Serializer):
        trial = serializers.CharField()
        status = serializers.IntegerField(help_text="what the single answer endpoint would answer")
        stored = serializers.BooleanField(help_text="false: refused (message, extra)")
        replayed = serializers.BooleanField(required=False)
        n_answered = serializers.IntegerField(required=False)
        n_trials = serializers.IntegerField(required=False)
        correct = serializers.BooleanField(required=False, allow_null=True, help_text="practice trials only")
        message = serializers.CharField(required=False)
        extra = serializers.DictField(required=False)

    def check_throttles(self, request):
        # The body is read first, so that the throttle counts the batch's answers (bounded by BATCH_MAX); a
        # body that cannot be read still counts one before its error is answered.
        try:
            self.body = json_body(request, max_bytes=BATCH_MAX_BYTES)
        except (ApplicationError, ParseError):
            self.throttle_weight = 1
            super().check_throttles(request)
            raise
        answers = self.body.get("answers") if isinstance(self.body, dict) else None
        self.throttle_weight = min(len(answers), BATCH_MAX) if isinstance(answers, list) and answers else 1
        super().check_throttles(request)

    @extend_schema(
        request=InputSerializer,
        responses=inline_serializer("JudgmentBatchResults", {"results": ResultSerializer(many=True)}),
    )
    def post(self, request, token):
        outcomes = judgments_submit_batch(token=token, answers=batch_input(self.body))
        results = []
        for outcome in outcomes:
            if outcome.error is None:
                created = outcome.result.created
                results.append(
                    {"status": 201 if created else 200, **_answer_body(outcome.trial, outcome.result)}
                )
            else:
                error = outcome.error
                results.append(
                    {
                        "trial": outcome.trial,
                        "status": error.status_code,
                        "stored": False,
                        "message": error.message,
                        "extra": error.extra,
                    }
                )
        return _json_response({"results": results}, status.HTTP_200_OK)


class AssignmentSubmitApi(AnnotatorApi):
    """Finish the HIT. Answers 409 until the server holds every trial; then returns the completion code,
    the Prolific redirect or the MTurk form to post."""

    @extend_schema(request=None, responses=AssignmentOutputSerializer)
    def post(self, request, token):
        assignment = assignment_submit(token=token)
        return Response(assignment_output(assignment))


class AssignmentReturnApi(AnnotatorApi):
    """Give the HIT back (its unanswered items go to other workers at once)."""

    @extend_schema(request=None, responses=inline_serializer("Returned", {"status": serializers.CharField()}))
    def post(self, request, token):
        assignment = assignment_return(token=token)
        return Response({"status": assignment.status})


# --- stimulus images ------------------------------------------------------------------------------------
def example_url(*, study_id, n: int, slot: str) -> str:
    return f"/api/v1/studies/{study_id}/examples/{n}/{slot}/"


def stimulus_response(path: str | None) -> HttpResponse:
    """A stimulus PNG with nothing that identifies the file: no ETag or Last-Modified (equal files would
    show equal validators), no file name; private caching only (the URL belongs to one assignment). With
    IMAGE_ACCEL_HEADER set, a reverse proxy sends the file (X-Accel-Redirect / X-Sendfile) and must be
    configured to add no validators either (docs/platform.md, "What a bot can still do"); it needs the local
    media storage (an object store has no file for the proxy to send)."""
    if not isinstance(path, str) or not STIMULUS_PATH.fullmatch(path):
        raise Http404("no such image")
    crowd = settings.PERCEPTLAB_CROWD
    if crowd["IMAGE_ACCEL_HEADER"]:
        response = HttpResponse(content_type="image/png")
        response[crowd["IMAGE_ACCEL_HEADER"]] = crowd["IMAGE_ACCEL_PREFIX"] + path
    else:
        try:  # streamed by the app from any backend, never a redirect to a URL naming the content hash
            response = stream_response(path, content_type="image/png")
        except OSError:
            raise Http404("no such image") from None
    response["Cache-Control"] = "private, max-age=86400, no-transform"
    return response


class AssignmentTrialImageApi(AnnotatorApi):
    """One image of one trial, by screen slot (2AFC: left, ref, right; JND: first, second). The URL is
    opaque and bound to the assignment's token: two trials, or two slots of one trial, never share one."""

    throttle_classes = [AssignmentImageThrottle]

    @extend_schema(responses={(200, "image/png"): bytes})
    def get(self, request, token, trial_id, slot):
        return stimulus_response(trial_image(token=token, trial_id=trial_id, slot=slot))


class StudyExampleImageApi(AnnotatorApi):
    """An MTurk preview's example images: the study's first practice items (whose answers the annotator
    is shown anyway), by number and slot. Active studies only."""

    throttle_classes = [AssignmentImageThrottle]

    @extend_schema(responses={(200, "image/png"): bytes})
    def get(self, request, study_id, n, slot):
        study = get_object_or_404(
            Study.objects.only("kind", "status"), pk=study_id, status=Study.Status.ACTIVE
        )
        if n >= N_EXAMPLES:
            raise Http404("no such example")
        item = (
            study.items.filter(role=Item.Role.PRACTICE)
            .order_by("index")
            .only("ref_image", "p0_image", "p1_image")[n : n + 1]
            .first()
        )
        return stimulus_response(
            slot_image(kind=study.kind, item=item, swap=False, slot=slot) if item else None
        )


# --- researchers ----------------------------------------------------------------------------------------
class StudyWorkersApi(APIView):
    """Per-worker QC statistics (hashed ids only), 50 workers a page (?page=, from 1; most judgments
    first): {"count", "next", "previous", "results"}. A page past the last gives the last."""

    @extend_schema(
        parameters=[OpenApiParameter("page", int, description="page number, from 1")],
        responses=paged_schema(
            "WorkerStatsPage",
            inline_serializer(
                "WorkerStats",
                {"worker": serializers.CharField(), "judgments": serializers.IntegerField()},
                many=True,
            ),
        ),
    )
    def get(self, request, study_id):
        study = owned_study(request, study_id)
        page = worker_stats_page(study=study, page=worker_page_number(value=request.query_params.get("page")))
        return Response(paged(request, page))


class StudyWorkerReviewApi(APIView):
    """Approve a worker, or reject them with a reason (at most 500 characters). A rejection rejects all their
    assignments in the study (leases released, their judgments out of counts, exports and training) and keeps
    them from starting new HITs there; it is final (approving a rejected worker answers 409). The worker is
    named by the 16-character hash prefix the workers list shows."""

    class InputSerializer(serializers.Serializer):
        decision = serializers.ChoiceField(choices=["approve", "reject"])
        reason = serializers.CharField(max_length=REASON_MAX, required=False, allow_blank=True, default="")

    class OutputSerializer(serializers.Serializer):
        worker = serializers.SerializerMethodField()
        decision = serializers.CharField()
        reason = serializers.CharField()
        decided_at = serializers.DateTimeField()
        decided_by = serializers.SerializerMethodField()

        def get_worker(self, review) -> str:
            return review.worker.external_hash[:HASH_PREFIX]

        def get_decided_by(self, review) -> str | None:
            return review.decided_by.get_username() if review.decided_by else None

    @extend_schema(request=InputSerializer, responses=OutputSerializer)
    def post(self, request, study_id, worker_hash):
        study = owned_study(request, study_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        review = worker_review_set(
            study=study,
            worker_hash=worker_hash,
            decision=data.validated_data["decision"],
            reason=data.validated_data["reason"],
            user=request.user,
        )
        return Response(self.OutputSerializer(review).data)
