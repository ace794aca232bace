import os
import platform
import socket

from celery import shared_task


@shared_task(name="core.ping", time_limit=30, soft_time_limit=20)
def ping(payload: dict | None = None) -> dict:
    """Smoke task: proves a real worker consumed the message, with the stdlib `platform` intact."""
    return {
        "echo": payload or {},
        "system": platform.system(),
        "python": platform.python_version(),
        "pid": os.getpid(),
        "host": socket.gethostname(),
    }


def enqueue_on_commit(task, *args, **kwargs) -> None:
    """Send a task once the current transaction commits, so workers never see uncommitted rows.
    Outside a transaction it is sent at once (Django runs on_commit callbacks immediately)."""
    from django.db import transaction

    from config.celery_app import app, ensure_broker_folders

    ensure_broker_folders()  # the embedded filesystem broker writes into folders that must exist
    if isinstance(task, str):  # a task name: no import cycle between an app's services and its tasks
        transaction.on_commit(lambda: app.send_task(task, args=args, kwargs=kwargs))
    else:
        transaction.on_commit(lambda: task.apply_async(args=args, kwargs=kwargs))
