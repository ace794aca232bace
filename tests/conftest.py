"""Shared fixtures: personas, temporary media, and checks for the real services.

Under CI=true a missing service or browser fails the run instead of skipping tests.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
# Tests see only the CNN pools they train themselves, never one in the home directory.
os.environ["PERCEPTLAB_CNN_POOL"] = ""
# Tests never touch the network: "auto" backbones resolve to k-means unless a test provides ImageNet weights.
os.environ["PERCEPTLAB_OFFLINE"] = "1"


def _loopback_only(connect):
    """socket.connect for tests: loopback (the services, live servers, chromedriver) and Unix sockets only.
    Any other address fails at once, so a test that would download (torchvision weights, say) fails instead
    of reaching the network; DNS is never asked (urllib resolves first, then connects to an address)."""

    def guarded(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            host = address[0]
            try:
                loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
            except ValueError:  # a name other than localhost
                loopback = False
            if not loopback:
                raise OSError(f"tests never touch the network: a connection to {address!r} was refused")
        return connect(self, address)

    return guarded


socket.socket.connect = _loopback_only(socket.socket.connect)
socket.socket.connect_ex = _loopback_only(socket.socket.connect_ex)


@pytest.fixture(autouse=True)
def _isolate_cnn_pools():
    """A test that registers a CNN pool folder does not leak it into later tests."""
    import sys

    module = sys.modules.get("distortions.cnn.distortion")
    saved = list(module._EXTRA_DIRS) if module else None
    yield
    module = sys.modules.get("distortions.cnn.distortion")
    if module is not None:
        module._EXTRA_DIRS[:] = saved or []
        module._index.cache_clear()


def require(condition: bool, what: str) -> None:
    if condition:
        return
    if IN_CI:
        pytest.fail(f"{what} is required under CI=true (see .ci/run)")
    pytest.skip(f"{what} not available")


def port_open(url: str, default_port: int) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection(
            (parsed.hostname or "127.0.0.1", parsed.port or default_port), timeout=2
        ):
            return True
    except OSError:
        return False


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get("CELERY_BROKER_URL", "")
    require(url.startswith("redis://") and port_open(url, 6379), "Redis (CELERY_BROKER_URL=redis://...)")
    return url


@pytest.fixture
def postgres(settings):
    require(
        settings.DATABASES["default"]["ENGINE"].endswith("postgresql"),
        "PostgreSQL (DATABASE_URL=postgres://...)",
    )
    return settings.DATABASES["default"]


@pytest.fixture
def chromium_paths() -> tuple[str, str]:
    browser = shutil.which("chromium") or "/usr/bin/chromium"
    driver = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    require(os.path.exists(browser) and os.path.exists(driver), "Debian's chromium and chromium-driver")
    return browser, driver


@pytest.fixture(autouse=True)
def _media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture(autouse=True)
def _training_holds():
    """Each test starts without the retrain trigger's per-process holds (training.triggers)."""
    from training.triggers import holds_clear

    holds_clear()


@pytest.fixture
def researcher_carol(django_user_model):
    return django_user_model.objects.create_user(username="carol", password="carol-pass-123")


@pytest.fixture
def researcher_dave(django_user_model):
    return django_user_model.objects.create_user(username="dave", password="dave-pass-123")


@pytest.fixture
def api_client():
    from rest_framework.test import APIClient

    return APIClient()


def _png_patch(seed: int, size: int = 16):
    import numpy as np

    rng = np.random.default_rng(seed)
    return (rng.random((size, size, 3)) * 255).astype("uint8")


@pytest.fixture
def make_study(settings):
    """A study with real (tiny, random) content-addressed PNGs and items, without running the engine:
    make_study(kind="2afc", n_test=20, n_sentinels=15, n_practice=2, config={...}, owner=None)."""
    from pathlib import Path

    from distortions.imageio import write_png
    from studies.models import Item, Study
    from studies.services import study_create
    from studies.targets import item_targets_sync

    counter = [0]

    def build(
        *,
        kind="2afc",
        n_test=20,
        n_sentinels=15,
        n_practice=2,
        config=None,
        owner=None,
        val_fraction=0.5,
        categories=("traditional",),
        name="test study",
        active=True,
    ):
        study = study_create(name=name, kind=kind, build_config={}, owner=owner, config=config or {})
        images = Path(settings.MEDIA_ROOT) / "stimuli"
        images.mkdir(parents=True, exist_ok=True)
        items = []
        roles = ["practice"] * n_practice + ["sentinel"] * n_sentinels + ["test"] * n_test
        for index, role in enumerate(roles):
            files = []
            for _ in range(3):
                counter[0] += 1
                files.append("stimuli/" + write_png(_png_patch(counter[0]), images)[0])
            test_pos = index - n_practice - n_sentinels
            split = "val" if role == "test" and test_pos < round(n_test * val_fraction) else "train"
            expected = (
                ""
                if role == "test"
                else (("p0", "p1")[index % 2] if kind == "2afc" else ("same", "different")[index % 2])
            )
            items.append(
                Item(
                    study=study,
                    index=index,
                    split=split,
                    role=role,
                    expected=expected,
                    category=categories[index % len(categories)] if role == "test" else role,
                    ref_image=files[0],
                    p0_image=files[1],
                    p1_image=files[2],
                    records={"patch": {"i": index}},
                )
            )
        Item.objects.bulk_create(items)
        item_targets_sync(study=study)
        if active:
            Study.objects.filter(pk=study.pk).update(status=Study.Status.ACTIVE)
        study.refresh_from_db()
        return study

    return build


@pytest.fixture
def captured_tasks(monkeypatch):
    """Celery messages sent by name (core.tasks.enqueue_on_commit) are captured instead of sent."""
    from config.celery_app import app

    sent = []
    monkeypatch.setattr(
        app,
        "send_task",
        lambda name, args=(), kwargs=None, **kw: sent.append((name, tuple(args), kwargs or {})),
    )
    return sent


@pytest.fixture
def answer_trials():
    """answer_trials(assignment, policy) answers every unanswered trial through the service layer.
    policy(trial, item) returns the *item-level* choice (2AFC 'p0'/'p1', JND 'same'/'different');
    the helper maps it to the screen response through the trial's side swap, as a browser would."""
    from judgments.answers import judgment_submit
    from judgments.models import Trial

    def run(assignment, policy, *, limit=None):
        done = 0
        for trial in (
            Trial.objects.filter(assignment=assignment, answered=False)
            .select_related("item")
            .order_by("position")
        ):
            if limit is not None and done >= limit:
                break
            wanted = policy(trial, trial.item)
            if wanted in ("p0", "p1"):
                response = "left" if (wanted == "p0") != trial.swap else "right"
            else:
                response = wanted
            judgment_submit(
                token=assignment.token,
                trial_id=trial.public_id,
                response=response,
                rt_ms=900.0,
                idempotency_key=f"k-{trial.public_id}",
                durations={"ref_ms": 1000, "gap_ms": 250, "distorted_ms": 1000},
                display={"refresh_hz": 60},
            )
            done += 1
        return done

    return run


@pytest.fixture
def crowd(answer_trials):
    """crowd(study, n_workers, policy, prefix="worker-"): workers <prefix>0, 1, ... each take a HIT, answer
    it with answer_trials' policy and submit it, until n_workers have or the study has no work left."""
    from core.exceptions import ApplicationError
    from judgments.assignments import assignment_start
    from judgments.qc import assignment_submit

    def run(study, n_workers, policy, *, prefix="worker-"):
        for w in range(n_workers):
            try:
                a = assignment_start(study=study, platform="anonymous", worker_id=f"{prefix}{w}").assignment
            except ApplicationError:
                return
            answer_trials(a, policy)
            assignment_submit(token=a.token)

    return run


def _truthful(trial, item):
    if item.expected:
        return item.expected
    return "p0" if item.study.kind == "2afc" else "different"


@pytest.fixture
def truthful():
    """An annotator policy for answer_trials: sentinels and practice right, p0 (JND: different) on tests."""
    return _truthful


# --- settings in a fresh interpreter ---------------------------------------------------------------------
ROOT = Path(__file__).resolve().parents[1]
# Deployment variables this process may carry (CI sets some): cleared, so a probe sees only what it sets.
PROBE_CLEARED = {
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "CELERY_RESULT_BACKEND",
    "CACHE_URL",
    "SECRET_KEY",
    "DEBUG",
    "ALLOWED_HOSTS",
    "SECURE_HSTS_SECONDS",
    "PERCEPTLAB_TRUSTED_PROXIES",
}
SAFE_PRODUCTION_ENV = {
    "SECRET_KEY": "x" * 50,
    "ALLOWED_HOSTS": "percept.example.org",
    "DATABASE_URL": "postgres://u:p@db:5432/percept",
    "CELERY_BROKER_URL": "redis://redis:6379/0",
    "CACHE_URL": "redis://redis:6379/2",
}


def _settings_probe(module: str, env: dict, expr: str) -> subprocess.CompletedProcess:
    """Print `expr` (with `settings` and `RequestFactory` in scope) under settings `module` in a fresh
    interpreter whose environment is this one's, less PROBE_CLEARED, plus `env`."""
    clean = {k: v for k, v in os.environ.items() if k not in PROBE_CLEARED}
    code = (
        "import django; from django.conf import settings; django.setup(); "
        f"from django.test import RequestFactory; print({expr})"
    )
    path = {"DJANGO_SETTINGS_MODULE": module, "PYTHONPATH": f"{ROOT / 'platform'}:{ROOT}"}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**clean, **path, **env},
    )


@pytest.fixture
def settings_probe():
    """settings_probe(module, env, expr) -> CompletedProcess (see _settings_probe)."""
    return _settings_probe


@pytest.fixture
def production_probe():
    """production_probe(env, expr): production settings with safe values for every required variable."""
    return lambda env, expr: _settings_probe(
        "config.settings.production", {**SAFE_PRODUCTION_ENV, **env}, expr
    )


@pytest.fixture
def throttle_rates(settings):
    """throttle_rates({"judgments": "5/min", ...}) sets DRF's throttle rates for this test: the setting, and
    SimpleRateThrottle's class attribute, which DRF reads once at import. Each call and the teardown clear
    the default cache (the throttles' counts); the teardown restores the rates."""
    from django.core.cache import cache
    from rest_framework.settings import api_settings
    from rest_framework.throttling import SimpleRateThrottle

    saved = SimpleRateThrottle.THROTTLE_RATES

    def set_rates(rates: dict) -> None:
        cache.clear()
        settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}
        SimpleRateThrottle.THROTTLE_RATES = api_settings.DEFAULT_THROTTLE_RATES

    yield set_rates
    SimpleRateThrottle.THROTTLE_RATES = saved
    cache.clear()
