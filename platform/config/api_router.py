"""All `/api/v1/` routes, in one place."""

from django.urls import path

import core.converters  # noqa: F401  (registers <handle:...>)
from core.apis import PingApi
from exports.apis import ExportDetailApi, ExportDownloadApi, StudyExportListApi
from judgments.apis import (
    AssignmentDetailApi,
    AssignmentHeartbeatApi,
    AssignmentReturnApi,
    AssignmentStartApi,
    AssignmentSubmitApi,
    AssignmentTrialImageApi,
    JudgmentBatchApi,
    JudgmentSubmitApi,
    StudyExampleImageApi,
    StudyWorkerReviewApi,
    StudyWorkersApi,
)
from judgments.completions import StudyCompletionsApi
from studies.apis import (
    StudyCloseApi,
    StudyDetailApi,
    StudyImportApi,
    StudyListApi,
    StudyPauseApi,
    StudyStartApi,
)
from studies.source_apis import SourceSetDetailApi, SourceSetListApi
from training.apis import ModelVersionDetailApi, ModelVersionDownloadApi, StudyModelListApi, StudyTrainApi

urlpatterns = [
    # annotators (authorised by the assignment token) first, the answer and the start first of all: the
    # resolver tries patterns in order, and these take most requests (no pattern here overlaps another).
    path("assignments/<handle:token>/judgments/", JudgmentSubmitApi.as_view(), name="api-judgment-submit"),
    path(
        "assignments/<handle:token>/judgments/batch/", JudgmentBatchApi.as_view(), name="api-judgment-batch"
    ),
    path("studies/<uuid:study_id>/assignments/", AssignmentStartApi.as_view(), name="api-assignment-start"),
    path("assignments/<handle:token>/", AssignmentDetailApi.as_view(), name="api-assignment-detail"),
    path(
        "assignments/<handle:token>/heartbeat/",
        AssignmentHeartbeatApi.as_view(),
        name="api-assignment-heartbeat",
    ),
    path("assignments/<handle:token>/submit/", AssignmentSubmitApi.as_view(), name="api-assignment-submit"),
    path("assignments/<handle:token>/return/", AssignmentReturnApi.as_view(), name="api-assignment-return"),
    path(
        "assignments/<handle:token>/trials/<handle:trial_id>/<slug:slot>/",
        AssignmentTrialImageApi.as_view(),
        name="api-assignment-image",
    ),
    path("ping/", PingApi.as_view(), name="api-ping"),
    # researchers
    path("studies/", StudyListApi.as_view(), name="api-study-list"),
    path("studies/<uuid:study_id>/", StudyDetailApi.as_view(), name="api-study-detail"),
    path("studies/<uuid:study_id>/start/", StudyStartApi.as_view(), name="api-study-start"),
    path("studies/<uuid:study_id>/pause/", StudyPauseApi.as_view(), name="api-study-pause"),
    path("studies/<uuid:study_id>/close/", StudyCloseApi.as_view(), name="api-study-close"),
    path("studies/<uuid:study_id>/import/", StudyImportApi.as_view(), name="api-study-import"),
    path("studies/<uuid:study_id>/workers/", StudyWorkersApi.as_view(), name="api-study-workers"),
    path(
        "studies/<uuid:study_id>/workers/<str:worker_hash>/review/",
        StudyWorkerReviewApi.as_view(),
        name="api-study-worker-review",
    ),
    path("studies/<uuid:study_id>/train/", StudyTrainApi.as_view(), name="api-study-train"),
    path("studies/<uuid:study_id>/models/", StudyModelListApi.as_view(), name="api-study-models"),
    path("models/<uuid:model_id>/", ModelVersionDetailApi.as_view(), name="api-model-detail"),
    path("models/<uuid:model_id>/download/", ModelVersionDownloadApi.as_view(), name="api-model-download"),
    path("studies/<uuid:study_id>/exports/", StudyExportListApi.as_view(), name="api-study-exports"),
    path("studies/<uuid:study_id>/completions/", StudyCompletionsApi.as_view(), name="api-study-completions"),
    path("exports/<uuid:export_id>/", ExportDetailApi.as_view(), name="api-export-detail"),
    path("exports/<uuid:export_id>/download/", ExportDownloadApi.as_view(), name="api-export-download"),
    path("sources/", SourceSetListApi.as_view(), name="api-source-list"),
    path("sources/<uuid:set_id>/", SourceSetDetailApi.as_view(), name="api-source-detail"),
    path(
        "studies/<uuid:study_id>/examples/<int:n>/<slug:slot>/",
        StudyExampleImageApi.as_view(),
        name="api-study-example-image",
    ),
]
