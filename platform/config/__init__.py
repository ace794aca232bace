"""Wiring only: settings, URLs, the Celery app, ASGI/WSGI."""

from .celery_app import app as celery_app

__all__ = ["celery_app"]
