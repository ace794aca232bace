"""Embedded defaults for `make run`: SQLite, filesystem broker, a generated secret key, DEBUG on."""

from .base import *  # noqa: F403
from .base import DATA_DIR, env_bool, persistent_secret_key

DEBUG = env_bool("DEBUG", True)
SECRET_KEY = SECRET_KEY or persistent_secret_key(DATA_DIR)  # noqa: F405
# Serve frontend/static straight from the finders (no collectstatic step for make run).
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # noqa: F405
SERVE_MEDIA = env_bool("SERVE_MEDIA", True)
