"""Serve the platform locally: the web server, a Celery worker, the CNN pool's worker and the simulated
crowd, together (docs/first-run.md).

Prints the annotator URL, the dashboard URL and the admin login; Ctrl-C stops them all cleanly.

Processes: `web` (runserver); `worker` (queues default and gpu, with beat: stimulus builds, retraining,
exports); `cnnpool` (queue cnnpool only, one torch thread at low priority: the demo's CNN pool takes minutes
and must block neither the first page nor retraining and exports); `crowd` (manage.py demo_crowd: the
simulated crowd answering its study over HTTP; it exits by itself when the study is full, and at once when
an earlier run finished it). web, worker and cnnpool are needed: when one exits the rest are stopped.
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
from studies.services import demo_studies


def _child_env() -> dict[str, str]:
    """The environment for the children, with platform/ on PYTHONPATH."""
    # The worker is a fresh interpreter: it finds config, core, ... only with platform/ on its path
    # (the platform is never installed; manage.py puts it on its own path, README "Layout").
    path = [str(settings.PLATFORM_ROOT), str(settings.REPO_ROOT), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, path))}
    # the demo's simulated crowd retrains every few dozen judgments: space retrains seconds apart, not minutes
    env.setdefault("PERCEPTLAB_MIN_RETRAIN_INTERVAL_S", str(settings.PERCEPTLAB["DEMO_RETRAIN_INTERVAL_S"]))
    return env


def _celery(queues: str, name: str, *extra: str) -> list[str]:
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
        *extra,
        "--loglevel",
        "INFO",
        "--hostname",
        f"{name}@{os.uname().nodename}",
    ]


def _lower_priority() -> None:  # runs in the child before exec
    os.nice(10)


def _start(host: str, port: int, *, crowd: bool = True) -> dict[str, subprocess.Popen]:
    """Start the web server, the Celery worker (queues default and gpu, with beat), the CNN pool's worker
    (queue cnnpool) and, with `crowd`, the simulated crowd."""
    env = _child_env()
    manage = [sys.executable, str(settings.REPO_ROOT / "manage.py")]
    procs = {
        "web": subprocess.Popen([*manage, "runserver", f"{host}:{port}", "--noreload"], env=env),
        "worker": subprocess.Popen(_celery("default,gpu", "local", "--beat"), env=env),
        # One torch thread at nice 10: the pool's minutes of training leave a core to the web server,
        # the crowd and retraining (a 2-core laptop stays responsive).
        "cnnpool": subprocess.Popen(
            _celery("cnnpool", "cnnpool"),
            env={**env, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
            preexec_fn=_lower_priority,
        ),
    }
    if crowd:
        procs["crowd"] = subprocess.Popen([*manage, "demo_crowd", "--url", f"http://{host}:{port}"], env=env)
    return procs


def _welcome(base: str) -> str:
    """Where to go: the annotator (demo study), the dashboard, the admin login and the API docs."""
    studies = demo_studies()
    demo, jnd, crowd = studies.get("2afc"), studies.get("jnd"), studies.get("crowd")
    password = (
        admin_password_path().read_text().strip() if admin_password_path().exists() else "(run demo_setup)"
    )
    lines = [
        "",
        "perceptlab is running (Ctrl-C stops the web server, the workers and the simulated crowd)",
        f"  annotator : {base}/s/{demo.pk}/" if demo else f"  annotator : {base}/ (no demo study)",
        *([f"  JND demo  : {base}/s/{jnd.pk}/"] if jnd else []),
        f"  dashboard : {base}/dashboard/",
        *([f"  simulated : {base}/dashboard/{crowd.pk}/ (the simulated crowd's study)"] if crowd else []),
        f"  admin     : {base}/admin/  login {settings.PERCEPTLAB['DEMO_ADMIN_USERNAME']} / {password}",
        f"  API docs  : {base}/api/docs/",
        "",
    ]
    return "\n".join(lines)


NEEDED = ("web", "worker", "cnnpool")  # when one of these exits, the rest are stopped


def _stop_all(procs: dict[str, subprocess.Popen]) -> None:
    """SIGTERM to every child still running (SIGQUIT to the pool's worker: a cold shutdown, since a warm
    one would wait minutes for the model in training; the next run resumes it from its checkpoint), then up
    to 15 s for all of them before killing the rest."""
    for name, p in procs.items():
        if p.poll() is None:
            p.send_signal(signal.SIGQUIT if name == "cnnpool" else signal.SIGTERM)
    deadline = time.time() + 15
    for p in procs.values():
        try:
            p.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            p.kill()


class Command(BaseCommand):
    help = (
        "Run the web server, a Celery worker (queues default, gpu; with beat for periodic jobs), the CNN "
        "pool's worker (queue cnnpool) and the simulated crowd until Ctrl-C."
    )

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument("--no-crowd", action="store_true", help="do not start the simulated crowd")

    def handle(self, *args, host, port, no_crowd=False, **options):
        ensure_broker_folders()
        procs = _start(host, port, crowd=not no_crowd)
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
                dead = [name for name in NEEDED if procs[name].poll() is not None]
                if dead:
                    self.stderr.write(f"{', '.join(dead)} exited; stopping the rest")
                    break
                time.sleep(0.5)
        finally:
            _stop_all(procs)
            self.stdout.write("stopped web server and worker (and the CNN pool's worker and the crowd)")

    def _check_worker(self) -> None:
        """Send the smoke task in the background; the worker's log shows it succeed."""
        from core.tasks import ping

        ping.apply_async(kwargs={"payload": {"from": "rundev"}})
