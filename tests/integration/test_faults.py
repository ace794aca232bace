"""Faults under load: simulated annotators keep answering while the web workers and the Celery worker are
killed with SIGKILL and restarted, and PostgreSQL is stopped for a few seconds. Afterwards every answer a
client saw acknowledged is stored exactly once, no item holds more judgments than its target, every client
finished its HITs (no lease is left behind), and work queued while the worker was dead gets done."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.db import connections

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import require  # noqa: E402
from worker_process import celery_worker, child_env, wait_for  # noqa: E402

from devtools.processes import children, free_port  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.slow]


def kill9(*pids: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def pg_cluster(action: str) -> None:
    version = sorted(os.listdir("/etc/postgresql"))[0]
    extra = ["-m", "fast"] if action == "stop" else []
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action, *extra],
        check=True,
        timeout=120,
        capture_output=True,
    )


def pg_ready() -> bool:
    return subprocess.run(["pg_isready", "-h", "127.0.0.1", "-p", "5432", "-q"], check=False).returncode == 0


@pytest.mark.django_db(transaction=True)
def test_acknowledged_judgments_survive_kills_and_a_database_restart(
    settings, postgres, redis_url, tmp_path, make_study, answer_trials
):
    from devtools import loadtest
    from exports.models import Export
    from exports.services import export_create
    from judgments.assignments import assignment_start
    from judgments.models import Assignment
    from judgments.selectors import open_leases

    host = postgres.get("HOST") or ""
    require(
        host in ("127.0.0.1", "localhost")
        and shutil.which("pg_ctlcluster")
        and os.geteuid() == 0
        and os.path.isdir("/etc/postgresql"),
        "a local PostgreSQL cluster this test may stop (root, pg_ctlcluster)",
    )
    env = {
        **child_env(settings, redis_url),
        "DJANGO_SETTINGS_MODULE": "devtools.settings_loadtest",
        "PERCEPTLAB_DATA_DIR": str(tmp_path),
    }
    study = loadtest.loadtest_study(n_items=1000, target=2, hit_size=10)
    small = make_study(n_test=6, n_sentinels=2, n_practice=0)  # a study with image files, for the export job
    answer_trials(
        assignment_start(study=small, platform="anonymous", worker_id="w").assignment, lambda t, i: "p0"
    )
    port = free_port()
    events: list[str] = []
    web = contextlib.ExitStack()
    worker = contextlib.ExitStack()
    try:
        base_url, master = web.enter_context(
            loadtest.gunicorn(env, port=port, workers=2, threads=4, log_path=tmp_path / "gunicorn-1.log")
        )
        celery = worker.enter_context(celery_worker(env, log_path=tmp_path / "celery-1.log"))
        result: dict = {}
        load = threading.Thread(
            target=lambda: result.update(
                loadtest.run_load(base_url, str(study.pk), clients=16, seconds=24, finish_hits=True)
            )
        )
        load.start()
        t0 = time.time()

        def at(seconds: float) -> None:
            time.sleep(max(0.0, t0 + seconds - time.time()))

        at(3)  # SIGKILL every web worker; the gunicorn master forks new ones
        workers = children(master.pid)
        assert workers, "gunicorn has no workers"
        kill9(*workers)
        events.append(f"killed web workers {workers}")
        at(6)  # SIGKILL the Celery worker, queue an export while it is dead, then start a new worker
        kill9(celery.pid)
        celery.wait()
        export = export_create(study=small)
        time.sleep(1.5)
        worker.close()
        worker.enter_context(celery_worker(env, log_path=tmp_path / "celery-2.log"))
        events.append("killed and restarted the celery worker")
        at(10)  # SIGKILL the whole web server (master and workers) and start a new one on the same port
        kill9(master.pid, *children(master.pid))
        master.wait()
        web.close()
        base_url2, master = web.enter_context(
            loadtest.gunicorn(env, port=port, workers=2, threads=4, log_path=tmp_path / "gunicorn-2.log")
        )
        assert base_url2 == base_url
        events.append("killed and restarted gunicorn")
        at(15)  # stop PostgreSQL for a few seconds
        pg_cluster("stop")
        try:
            assert not pg_ready()
            time.sleep(3)
        finally:
            pg_cluster("start")
            wait_for(pg_ready, timeout=60)
        events.append("stopped and restarted PostgreSQL")
        load.join(timeout=300)
        assert not load.is_alive(), "clients did not finish"
        connections.close_all()  # this process's connection died with the server
        export.refresh_from_db()
        wait_for(lambda: Export.objects.get(pk=export.pk).status == Export.Status.DONE, timeout=120)
    finally:
        web.close()
        worker.close()
        if not pg_ready():
            pg_cluster("start")
            wait_for(pg_ready, timeout=60)
        connections.close_all()

    assert result["errors"] == [], result["errors"][:5]
    assert result["retried_requests"] > 0, "the faults never reached a client"
    assert result["judgments"] > 100 and result["hits"] > 10, result
    check = loadtest.verify(study, result["acknowledged"])
    assert check["acknowledged"] == len(result["acknowledged"])  # no trial acknowledged twice
    assert check["missing"] == check["duplicated"] == check["items_over_target_or_miscounted"] == 0, check
    # leases recover: every client finished its HITs, so nothing is left started or holding items
    assert check["open_trials"] == 0
    assert not Assignment.objects.filter(study=study, status="started").exists()
    assert open_leases(study=study) == {}
    print("fault test:", events, {k: result[k] for k in ("judgments", "hits", "retried_requests")}, check)
