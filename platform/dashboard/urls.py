from django.urls import path

from dashboard import study_new, views

urlpatterns = [
    path("dashboard/", views.study_list, name="dashboard"),
    path("dashboard/new/", study_new.study_new, name="study-new"),
    path("dashboard/new/preview/", study_new.study_new_preview, name="study-new-preview"),
    path("dashboard/<uuid:study_id>/", views.study_detail, name="dashboard-study"),
    path("dashboard/<uuid:study_id>/settings/", study_new.study_settings, name="study-settings"),
    path("dashboard/<uuid:study_id>/<slug:action>/", views.study_action, name="dashboard-action"),
]
