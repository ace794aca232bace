from django.urls import path

from dashboard import study_new, views

urlpatterns = [
    path("dashboard/", views.study_list, name="dashboard"),
    path("dashboard/new/", study_new.study_new, name="study-new"),
    path("dashboard/new/preview/", study_new.study_new_preview, name="study-new-preview"),
    path("dashboard/<uuid:study_id>/", views.study_detail, name="dashboard-study"),
    path("dashboard/<uuid:study_id>/settings/", study_new.study_settings, name="study-settings"),
    path("dashboard/<uuid:study_id>/build/", views.study_build_progress, name="study-build-progress"),
    path("dashboard/<uuid:study_id>/import/", views.study_import, name="study-import"),
    path("dashboard/<uuid:study_id>/try/", views.study_try, name="study-try"),
    path("dashboard/<uuid:study_id>/try/hit/", views.study_try_hit, name="study-try-hit"),
    path("dashboard/<uuid:study_id>/try/images/<str:name>", views.study_try_image, name="study-try-image"),
    path("dashboard/<uuid:study_id>/<slug:action>/", views.study_action, name="dashboard-action"),
]
# people and data (issue 18): ahead of dashboard-action, whose <slug:action> would take "workers"
urlpatterns = [
    path("dashboard/<uuid:study_id>/workers/", views.study_workers, name="study-workers"),
    path(
        "dashboard/<uuid:study_id>/workers/<str:worker_hash>/review/",
        views.study_worker_review,
        name="study-worker-review",
    ),
    path("dashboard/<uuid:study_id>/exports/", views.study_exports, name="study-exports"),
    path("dashboard/models/<uuid:model_id>/", views.model_card, name="model-card"),
    *urlpatterns,
]
