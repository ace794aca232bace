"""All `/api/v1/` routes, in one place."""

from django.urls import path

from core.apis import PingApi
from studies.apis import StudyDetailApi, StudyListApi

urlpatterns = [
    path("ping/", PingApi.as_view(), name="api-ping"),
    path("studies/", StudyListApi.as_view(), name="api-study-list"),
    path("studies/<uuid:study_id>/", StudyDetailApi.as_view(), name="api-study-detail"),
]
