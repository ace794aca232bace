"""Production-like settings for `make loadtest` on loopback (DEBUG off, no throttles in the way of the
simulated crowd, which shares one IP)."""

from config.settings.base import *  # noqa: F403

DEBUG = False
SECRET_KEY = SECRET_KEY or persistent_secret_key(DATA_DIR)  # noqa: F405
SERVE_MEDIA = True
REST_FRAMEWORK = {
    **REST_FRAMEWORK,  # noqa: F405
    "DEFAULT_THROTTLE_RATES": {"judgments": "100000/min", "assignment_start": "100000/min"},
}
LOGGING["root"]["level"] = "WARNING"  # noqa: F405
