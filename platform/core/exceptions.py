"""One error shape for the whole API: {"message": str, "extra": dict}."""

from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions as drf_exceptions
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler

logger = logging.getLogger(__name__)


class ApplicationError(Exception):
    """An expected business error; rendered as 400 unless a status is given."""

    def __init__(self, message: str, extra: dict | None = None, status_code: int = 400):
        super().__init__(message)
        self.message = message
        self.extra = extra or {}
        self.status_code = status_code


def api_exception_handler(exc, context):
    if isinstance(exc, ApplicationError):
        return Response({"message": exc.message, "extra": exc.extra}, status=exc.status_code)
    if isinstance(exc, DjangoValidationError):
        exc = drf_exceptions.ValidationError(getattr(exc, "message_dict", None) or exc.messages)
    elif isinstance(exc, Http404):
        exc = drf_exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = drf_exceptions.PermissionDenied()
    response = exception_handler(exc, context)
    if response is None:
        return None  # a real bug: Django's 500 handler logs it
    if isinstance(exc, drf_exceptions.ValidationError):
        response.data = {"message": "Validation error", "extra": {"fields": response.data}}
    else:
        detail = response.data.get("detail", "") if isinstance(response.data, dict) else response.data
        response.data = {"message": str(detail), "extra": {}}
    if response.status_code >= status.HTTP_500_INTERNAL_SERVER_ERROR:  # pragma: no cover
        logger.error("API error %s: %s", response.status_code, response.data)
    return response
