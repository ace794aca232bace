"""Fast settings for the test suite. DATABASE_URL / CELERY_BROKER_URL from the environment select the
integration tier (Postgres + Redis); without them tests run on SQLite."""

from .base import *  # noqa: F403
from .base import env_str

DEBUG = False
SECRET_KEY = "test-secret-key-not-for-production-0123456789abcdef"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
# Media: base's choice (local unless PERCEPTLAB_STORAGE says otherwise: the S3 integration test's worker).
# No collected static files in tests: WhiteNoise serves straight from the finders.
STATIC_ROOT = None
WHITENOISE_USE_FINDERS = True
SERVE_MEDIA = True
# Tests that need a CNN pool train a tiny one themselves.
PERCEPTLAB = {**PERCEPTLAB, "DEMO_CNN": False}  # noqa: F405
# Many tests start assignments from 127.0.0.1 within a minute; the throttle tests set their own rates (in
# this process, or through THROTTLE_* for a child process).
REST_FRAMEWORK = {
    **REST_FRAMEWORK,  # noqa: F405
    "DEFAULT_THROTTLE_RATES": {
        "judgments": env_str("THROTTLE_JUDGMENTS", "100000/min"),
        "assignment_start": env_str("THROTTLE_ASSIGNMENT_START", "100000/min"),
    },
}
# Tests retrain back to back; tests/security sets its own interval.
PERCEPTLAB_MIN_RETRAIN_INTERVAL_S = int(env_str("PERCEPTLAB_MIN_RETRAIN_INTERVAL_S", "0"))
