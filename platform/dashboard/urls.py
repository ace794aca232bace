"""The researcher's pages (login required; a study is its owner's: others get 404)."""

from django.urls import path, register_converter

from dashboard import study_new, views


class StudyActionConverter:
    """The study page's POST actions, by name: nothing else reaches study_action (so /workers/ and the other
    pages below never fall into it, whatever the order)."""

    regex = "start|pause|close|export|evaluate"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(StudyActionConverter, "study_action")

urlpatterns = [
    path("dashboard/", views.study_list, name="dashboard"),
    path("dashboard/new/", study_new.study_new, name="study-new"),
    path("dashboard/new/preview/", study_new.study_new_preview, name="study-new-preview"),
    path("dashboard/models/<uuid:model_id>/", views.model_card, name="model-card"),
    path("dashboard/<uuid:study_id>/", views.study_detail, name="dashboard-study"),
    path("dashboard/<uuid:study_id>/<study_action:action>/", views.study_action, name="dashboard-action"),
    path("dashboard/<uuid:study_id>/build/", views.study_build_progress, name="study-build-progress"),
    path("dashboard/<uuid:study_id>/import/", views.study_import, name="study-import"),
    path("dashboard/<uuid:study_id>/settings/", study_new.study_settings, name="study-settings"),
    path("dashboard/<uuid:study_id>/try/", views.study_try, name="study-try"),
    path("dashboard/<uuid:study_id>/try/hit/", views.study_try_hit, name="study-try-hit"),
    path("dashboard/<uuid:study_id>/try/images/<str:name>", views.study_try_image, name="study-try-image"),
    path("dashboard/<uuid:study_id>/workers/", views.study_workers, name="study-workers"),
    path(
        "dashboard/<uuid:study_id>/workers/<str:worker_hash>/review/",
        views.study_worker_review,
        name="study-worker-review",
    ),
    path("dashboard/<uuid:study_id>/exports/", views.study_exports, name="study-exports"),
]
