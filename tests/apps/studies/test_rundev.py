"""`make run`'s last step: the web server and a worker together, stopped cleanly by Ctrl-C."""

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from devtools.processes import free_port

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.slow
def test_rundev_serves_pages_and_its_worker_processes_a_task(tmp_path):
    # no PYTHONPATH: manage.py finds platform/ itself and hands it to the worker it starts
    env = {
        **{k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        "PERCEPTLAB_DATA_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "DATABASE_URL": "",
        "CELERY_BROKER_URL": "",
        "CELERY_RESULT_BACKEND": "",
        "PYTHONUNBUFFERED": "1",
    }
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "-v0"], env=env, check=True, timeout=120)
    setup = subprocess.run(
        [*manage, "demo_setup", "--items", "10", "--skip-cnn", "--only-2afc"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "demo study built" in setup.stdout
    again = subprocess.run(
        [*manage, "demo_setup", "--skip-cnn", "--only-2afc"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "demo study reused" in again.stdout

    port = free_port()
    log = tmp_path / "rundev.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [*manage, "rundev", "--port", str(port)], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline, status = time.time() + 60, None
        while time.time() < deadline:
            try:
                status = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).status
                if "core.ping" in log.read_text() and "succeeded" in log.read_text():
                    break
            except OSError:
                pass
            time.sleep(0.5)
        text = log.read_text()
        assert status == 200, text
        assert "succeeded" in text and "'system': 'Linux'" in text, text
        for label in ("annotator : http://127.0.0.1", "dashboard : http://127.0.0.1", "login admin /"):
            assert label in text
        # the pool's trainer and the crowd have nothing to do here and exit; the rest keeps serving
        deadline = time.time() + 60
        while time.time() < deadline and not (
            "CNN pool: nothing to train" in log.read_text() and "no simulated demo study" in log.read_text()
        ):
            time.sleep(0.5)
        assert (
            "CNN pool: nothing to train" in log.read_text() and "no simulated demo study" in log.read_text()
        )
        assert proc.poll() is None
        annotator = next(line.split()[-1] for line in text.splitlines() if "annotator :" in line)
        assert urllib.request.urlopen(annotator, timeout=5).status == 200
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
    assert code == 0
    assert "stopped web server and worker" in log.read_text()
    leftover = subprocess.run(["pgrep", "-f", f"runserver 127.0.0.1:{port}"], capture_output=True)
    assert leftover.returncode == 1  # no orphaned web server
