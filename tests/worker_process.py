"""Start a real Celery worker process for a test and stop it afterwards (devtools.processes.child_process)."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path


def child_env(settings, redis_url: str | None = None) -> dict:
    """Environment for a child process (worker, gunicorn) that must see this test's database and media."""
    from urllib.parse import urlparse, urlunparse

    url = urlparse(os.environ["DATABASE_URL"])
    env = {
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": urlunparse(url._replace(path="/" + settings.DATABASES["default"]["NAME"])),
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
    }
    if redis_url:
        env.update({"CELERY_BROKER_URL": redis_url, "CELERY_RESULT_BACKEND": redis_url})
    return env


@contextlib.contextmanager
def celery_worker(env: dict, queues: str = "default,gpu", log_path: Path | None = None):
    from config.celery_app import worker_command
    from devtools.processes import child_process

    argv = worker_command(queues, f"test{os.getpid()}@%h", "--without-gossip", "--without-mingle")
    with child_process(argv, env=env, log_path=log_path) as proc:
        yield proc


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.2):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"condition not met within {timeout}s")
