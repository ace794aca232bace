from django.urls import path

from dashboard import views

urlpatterns = [
    path("dashboard/", views.study_list, name="dashboard"),
    path("dashboard/<uuid:study_id>/", views.study_detail, name="dashboard-study"),
    path("dashboard/<uuid:study_id>/<slug:action>/", views.study_action, name="dashboard-action"),
]
