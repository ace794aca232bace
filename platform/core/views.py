from django.http import JsonResponse
from django.shortcuts import render

from core.services import system_status
from studies.selectors import study_list_public


def home(request):
    return render(request, "home.html", {"studies": study_list_public()})


def healthz(request):
    return JsonResponse(system_status())
