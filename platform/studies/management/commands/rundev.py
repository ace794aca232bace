"""Serve the platform locally: the web server and a real Celery worker process, together.

Prints the annotator URL, the dashboard URL and the admin login; Ctrl-C stops both cleanly.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand

from config.celery_app import ensure_broker_folders
from studies.management.commands.demo_setup import admin_password_path
from studies.models import Study


def _child_env() -> dict[str, str]:
    """The environment for the children, with platform/ on PYTHONPATH."""
    # The worker is a fresh interpreter: it finds config, core, ... only with platform/ on its path
    # (the platform is never installed; manage.py puts it on its own path, README "Layout").
    path = [str(settings.PLATFORM_ROOT), str(settings.REPO_ROOT), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, path))}


def _start(host: str, port: int) -> dict[str, subprocess.Popen]:
    """Start the web server and the Celery worker (queues default and gpu, with beat)."""
    env = _child_env()
    manage = [sys.executable, str(settings.REPO_ROOT / "manage.py")]
    web = subprocess.Popen([*manage, "runserver", f"{host}:{port}", "--noreload"], env=env)
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config.celery_app",
            "worker",
            "-Q",
            "default,gpu",
            "--pool",
            "solo",
            "--beat",
            "--loglevel",
            "INFO",
            "--hostname",
            f"local@{os.uname().nodename}",
        ],
        env=env,
    )
    return {"web": web, "worker": worker}


def _welcome(base: str) -> str:
    """Where to go: the annotator (demo study), the dashboard, the admin login and the API docs."""
    demo = Study.objects.filter(is_demo=True).first()
    password = (
        admin_password_path().read_text().strip() if admin_password_path().exists() else "(run demo_setup)"
    )
    lines = [
        "",
        "perceptlab is running (Ctrl-C stops the web server and the worker)",
        f"  annotator : {base}/s/{demo.pk}/" if demo else f"  annotator : {base}/ (no demo study)",
        f"  dashboard : {base}/dashboard/",
        f"  admin     : {base}/admin/  login {settings.PERCEPTLAB['DEMO_ADMIN_USERNAME']} / {password}",
        f"  API docs  : {base}/api/docs/",
        "",
    ]
    return "\n".join(lines)


def _stop_all(procs: dict[str, subprocess.Popen]) -> None:
    """SIGTERM to every child still running, then up to 15 s for all of them before killing the rest."""
    for p in procs.values():
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.time() + 15
    for p in procs.values():
        try:
            p.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            p.kill()


class Command(BaseCommand):
    help = (
        "Run the web server and a Celery worker (queues default, gpu; with beat for periodic jobs) "
        "until Ctrl-C."
    )

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))

    def handle(self, *args, host, port, **options):
        ensure_broker_folders()
        procs = _start(host, port)
        self.stdout.write(_welcome(f"http://{host}:{port}"))
        self._check_worker()
        stopping = False

        def stop(signum, frame):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        try:
            while not stopping:
                dead = [name for name, p in procs.items() if p.poll() is not None]
                if dead:
                    self.stderr.write(f"{', '.join(dead)} exited; stopping the rest")
                    break
                time.sleep(0.5)
        finally:
            _stop_all(procs)
            self.stdout.write("stopped web server and worker")

    def _check_worker(self) -> None:
        """Send the smoke task in the background; the worker's log shows it succeed."""
        from core.tasks import ping

        ping.apply_async(kwargs={"payload": {"from": "rundev"}})
