"""The first run on an empty data dir, started the way `make run` starts it (migrate, demo_setup, rundev
on SQLite and the filesystem broker), with a small CNN pool and a smaller simulated study so it fits in a
few minutes: the annotator URL answers within 60 s (the first-run requirement, docs/first-run.md), the
CNN pool's progress is on the home page, and the simulated study's dashboard fills (agreement with the
human ceiling, the learning curve, a finished export). Ctrl-C then stops every process, and a second run
redoes nothing."""

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from devtools.bench_first_run import http_status, sigint_default
from devtools.processes import free_port

pytestmark = [pytest.mark.browser, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts"
FIRST_PAGE_S = 60  # the requirement: the annotator URL answers within a minute
DASHBOARD_S = 300  # the simulated study's dashboard fills within 5 minutes of the first page
SMALL = {  # a 2-model pool of 6 steps and a 60-triplet simulated study: the whole test in a few minutes
    "PERCEPTLAB_DEMO_CNN_MODELS": "2",
    "PERCEPTLAB_DEMO_CNN_STEPS": "6",
    "PERCEPTLAB_DEMO_CROWD_ITEMS": "60",
    "PERCEPTLAB_DEMO_CROWD_EVERY": "40",
    "PERCEPTLAB_DEMO_CROWD_PACE_S": "0.3",
}
REUSED = (
    "demo study reused",
    "CNN pool ready (reused)",
    "CNN pool: nothing to train",
    "simulated crowd: finished in an earlier run",
)


@contextlib.contextmanager
def _make_run(data: Path, log: Path):
    """`make run`'s three steps on the data dir `data`; yields (process, base URL, seconds to the annotator
    page or None); stops the run with SIGINT to its process group, as Ctrl-C does, and checks that every
    process of it exited."""
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        "PERCEPTLAB_DATA_DIR": str(data),
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "DATABASE_URL": "",
        "CELERY_BROKER_URL": "",
        "CELERY_RESULT_BACKEND": "",
        "PYTHONUNBUFFERED": "1",
        **SMALL,
    }
    py, manage = sys.executable, ROOT / "manage.py"
    command = f"{py} {manage} migrate --noinput && {py} {manage} demo_setup && exec {py} {manage} rundev"
    started = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.Popen(
            ["bash", "-c", f"{command} --port {port}"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=sigint_default,
        )
    first_page = None
    try:
        while time.monotonic() - started < FIRST_PAGE_S + 30 and proc.poll() is None:
            m = re.search(r"annotator : (\S+/s/\S+/)", log.read_text())
            if m and http_status(m.group(1)) == 200:
                first_page = time.monotonic() - started
                break
            time.sleep(0.25)
        yield proc, f"http://127.0.0.1:{port}", first_page
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
        code = proc.wait(timeout=60)
        assert code == 0, log.read_text()[-3000:]
        assert "stopped web server and worker" in log.read_text()
        deadline = time.monotonic() + 10  # the children rundev waited for may leave a moment later
        while time.monotonic() < deadline:
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
        else:
            left = subprocess.run(["ps", "-o", "pid,stat,cmd", "-g", str(proc.pid)], capture_output=True)
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"processes of the run outlived Ctrl-C by 10 s:\n{left.stdout.decode()}")


def test_first_run_serves_fast_shows_the_pool_and_fills_the_simulated_dashboard(tmp_path, browser):
    data, log = tmp_path / "var", tmp_path / "run.log"
    with _make_run(data, log) as (proc, base, first_page):
        _first_run(browser, base, data, log, first_page)
    # a second run redoes nothing: no stimulus build, no pool training, no crowd
    again = tmp_path / "again.log"
    with _make_run(data, again) as (proc, base, first_page):
        assert first_page is not None, again.read_text()[-3000:]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not all(s in again.read_text() for s in REUSED):
            time.sleep(0.5)
        text = again.read_text()
        assert all(s in text for s in REUSED), text[-3000:]
        assert "study_build_stimuli[" not in text and "demo study built" not in text


def _first_run(browser, base, data, log, first_page):
    assert first_page is not None and first_page < FIRST_PAGE_S, log.read_text()[-3000:]
    shown_at = time.monotonic()

    browser.get(base + "/")
    pool = browser.find_element("id", "cnn-pool")
    assert "CNN distortion pool" in pool.text and "2" in pool.text
    crowd_link = browser.find_element("css selector", "#simulated-study a").get_attribute("href")
    assert "/dashboard/" in crowd_link

    password = (data / "admin_password").read_text().strip()
    browser.get(f"{base}/accounts/login/?next={crowd_link.removeprefix(base)}")
    browser.find_element("id", "id_username").send_keys("admin")
    browser.find_element("id", "id_password").send_keys(password)
    browser.find_element("id", "login-submit").click()

    wanted = {
        "agreement with the human ceiling": lambda src: "human ceiling" in src,
        "learning curve": lambda src: "agreement vs judgments" in src or "learning curve" in src,
        "a finished export": lambda src: "/api/v1/exports/" in src and 'data-status="done"' in src,
        "a trained k-means model": lambda src: "/api/v1/models/" in src and "trained alex-kmeans lin" in src,
    }
    missing = list(wanted)
    while time.monotonic() - shown_at < DASHBOARD_S:
        browser.get(crowd_link)
        src = browser.page_source.lower()
        missing = [name for name, seen in wanted.items() if not seen(src)]
        if not missing:
            break
        time.sleep(5)
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "first_run_simulated_dashboard.png"))
    assert not missing, (
        f"after {DASHBOARD_S} s the dashboard lacks {missing}; log:\n{log.read_text()[-3000:]}"
    )
    learning_points = re.findall(r"(\d+) judgments", browser.page_source)
    assert learning_points  # "Last evaluated ... on N judgments"

    deadline = time.monotonic() + 120  # the pool's items join the 2AFC demo after its last model
    while True:
        browser.get(base + "/")
        pool = browser.find_element("id", "cnn-pool").text
        if "ready: 2 models trained" in pool or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert "ready: 2 models trained" in pool and "triplets joined the 2AFC demo" in pool, pool

    # the trained model downloads from the dashboard's Models panel and loads as a metric.LPIPS
    browser.get(crowd_link)
    href = browser.find_element("css selector", "#models-title ~ table a[href$='/download/']").get_attribute(
        "href"
    )
    session = browser.get_cookie("sessionid")["value"]
    request = urllib.request.Request(href, headers={"Cookie": f"sessionid={session}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200 and response.headers["Content-Type"] == "application/zip"
        bundle = data.parent / "model.zip"
        bundle.write_bytes(response.read())
    _model_loads(bundle)


def _model_loads(bundle: Path) -> None:
    """The downloaded zip holds a k-means trunk (offline: auto resolved to k-means) and gives distances."""
    import json
    import zipfile

    import torch

    from metric.bundle import load_bundle

    with zipfile.ZipFile(bundle) as archive:  # the members sit in one folder named after the model
        names = {name.rsplit("/", 1)[-1]: name for name in archive.namelist()}
        assert {"heads.pth", "trunk.pth", "model_card.json", "MODEL_CARD.md"} <= set(names), names
        card = json.loads(archive.read(names["model_card.json"]))
    assert "kmeans" in json.dumps(card), card
    model = load_bundle(bundle)
    x0, x1 = torch.rand(2, 3, 64, 64) * 2 - 1, torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        d = model(x0, x1).flatten()
    assert d.shape == (2,) and torch.isfinite(d).all() and (d > 0).all()
