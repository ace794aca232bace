from django.urls import path

from studies import views

urlpatterns = [
    path("s/<uuid:study_id>/", views.study_annotate, name="study-annotate"),
]
