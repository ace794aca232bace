from django.urls import path

from studies import views

urlpatterns = [
    path("s/<uuid:study_id>/", views.study_preview, name="study-preview"),
    path("dashboard/", views.dashboard, name="dashboard"),
]
