"""The Celery application. Workers start with `celery -A config.celery_app worker -Q default,gpu`."""

import os
import sys

from celery import Celery, Task
from celery.signals import setup_logging
from django.db import InterfaceError, OperationalError
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")


class PlatformTask(Task):
    """Every task retries, with backoff, when the database is briefly away (a restart, a failover): the
    work is redone from the start, which every task here allows (exports and builds are idempotent)."""

    autoretry_for = (OperationalError, InterfaceError)
    retry_backoff = 2
    retry_backoff_max = 60
    retry_jitter = True
    max_retries = 8


app = Celery("perceptlab", task_cls=PlatformTask)
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = (Queue("default"), Queue("gpu"))
app.autodiscover_tasks()


@setup_logging.connect
def _configure_logging(*args, **kwargs) -> None:  # pragma: no cover - wiring
    from logging.config import dictConfig

    from django.conf import settings

    dictConfig(settings.LOGGING)


_FOLDERS_READY = False


def ensure_broker_folders() -> None:
    """The filesystem transport needs its folders before the first message (once per process)."""
    global _FOLDERS_READY
    if _FOLDERS_READY:
        return
    from django.conf import settings

    if settings.CELERY_BROKER_URL.startswith("filesystem"):
        for key in ("data_folder_in", "data_folder_out", "processed_folder", "control_folder"):
            os.makedirs(settings.CELERY_BROKER_TRANSPORT_OPTIONS[key], exist_ok=True)
    if settings.CELERY_RESULT_BACKEND.startswith("file://"):
        os.makedirs(settings.CELERY_RESULT_BACKEND[len("file://") :], exist_ok=True)
    _FOLDERS_READY = True


def worker_command(queues: str, hostname: str, *extra: str) -> list[str]:
    """The command line of a solo Celery worker process of this app on `queues` (make run, the tests)."""
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "config.celery_app",
        "worker",
        "-Q",
        queues,
        "--pool",
        "solo",
        "--loglevel",
        "INFO",
        *extra,
        "--hostname",
        hostname,
    ]
