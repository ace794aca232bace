from django.urls import path

from accounts import views

urlpatterns = [path("accounts/token/", views.api_token, name="api-token")]
