"""Shared fixtures: personas, temporary media, and checks for the real services.

Under CI=true a missing service or browser fails the run instead of skipping tests.
"""

from __future__ import annotations

import os
import shutil
import socket
from urllib.parse import urlparse

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
# Tests see only the CNN pools they train themselves, never one in the home directory.
os.environ["PERCEPTLAB_CNN_POOL"] = ""


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
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or default_port), timeout=2):
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
    require(settings.DATABASES["default"]["ENGINE"].endswith("postgresql"), "PostgreSQL (DATABASE_URL=postgres://...)")
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
