"""Serve the platform locally: the web server, a Celery worker, the CNN pool's worker and the simulated
crowd, together (docs/first-run.md).

Prints the annotator URL, the dashboard URL and the admin login; Ctrl-C stops them all cleanly.

Processes: `web` (runserver); `worker` (queues default and gpu, with beat: stimulus builds, retraining,
exports); `cnnpool` (manage.py demo_cnn_pool at low priority: the demo's CNN pool takes minutes and must
block neither the first page nor retraining and exports, so it is not a task of the one solo worker);
`crowd` (manage.py demo_crowd: the simulated crowd answering its study over HTTP). cnnpool and crowd exit
by themselves when done (at once when an earlier run finished them); when web or worker exits, the rest
are stopped.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand

from config.celery_app import ensure_broker_folders, worker_command
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


def _lower_priority() -> None:  # runs in the child before exec
    os.nice(10)


def _start(host: str, port: int, *, crowd: bool = True) -> dict[str, subprocess.Popen]:
    """Start the web server, the Celery worker (queues default and gpu, with beat), the CNN pool's trainer
    and, with `crowd`, the simulated crowd."""
    env = _child_env()
    manage = [sys.executable, str(settings.REPO_ROOT / "manage.py")]
    threads = str(max(1, (os.cpu_count() or 1) - 1))
    procs = {
        "web": subprocess.Popen([*manage, "runserver", f"{host}:{port}", "--noreload"], env=env),
        "worker": subprocess.Popen(
            worker_command("default,gpu", f"local@{os.uname().nodename}", "--beat"), env=env
        ),
        # The pool trains in one process at nice 10 with one core fewer than the machine has for torch's
        # threads: it takes the CPU the web server, the crowd and retraining leave idle, and the machine
        # stays responsive. It exits when the pool is done (at once on a later run).
        "cnnpool": subprocess.Popen(
            [*manage, "demo_cnn_pool"],
            env={**env, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads},
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


NEEDED = (
    "web",
    "worker",
)  # when one of these exits, the rest are stopped (cnnpool and crowd end by themselves)


def _stop_all(procs: dict[str, subprocess.Popen]) -> None:
    """SIGTERM to every child still running (the pool's trainer stops at once, the next run resumes it from
    its checkpoints), then up to 15 s for all of them before killing the rest."""
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
        "Run the web server, a Celery worker (queues default, gpu; with beat for periodic jobs), the CNN "
        "pool's trainer and the simulated crowd until Ctrl-C."
    )

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument("--no-crowd", action="store_true", help="do not start the simulated crowd")

    def handle(self, *args, host, port, no_crowd=False, **options):
        stopping = False

        def stop(signum, frame):
            nonlocal stopping
            stopping = True

        # Before any child starts: a Ctrl-C while they start up is not lost (nor ignored, when this process
        # inherited an ignored SIGINT, as a background job of a script does); the children, started after
        # this, get SIGINT's default action back.
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        procs: dict[str, subprocess.Popen] = {}
        try:
            ensure_broker_folders()
            procs = _start(host, port, crowd=not no_crowd)
            self.stdout.write(_welcome(f"http://{host}:{port}"))
            self._check_worker()
            while not stopping:
                ended = {name for name, p in procs.items() if p.poll() is not None}  # reaps finished ones
                dead = [name for name in NEEDED if name in ended]
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
