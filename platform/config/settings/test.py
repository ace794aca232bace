"""Fast settings for the test suite. DATABASE_URL / CELERY_BROKER_URL from the environment select the
integration tier (Postgres + Redis); without them tests run on SQLite."""

import os

# Media: local, whatever PERCEPTLAB_STORAGE the shell exports (a developer's S3 settings must never send the
# suite's files to a real bucket). A process opts in with the test-only PERCEPTLAB_TEST_STORAGE=s3 (the S3
# integration test's worker; its AWS_* variables then apply). Set before base reads it, for base's checks too.
os.environ["PERCEPTLAB_STORAGE"] = os.environ.get("PERCEPTLAB_TEST_STORAGE", "local")

from .base import *  # noqa: E402, F403
from .base import env_str  # noqa: E402

DEBUG = False
SECRET_KEY = "test-secret-key-not-for-production-0123456789abcdef"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
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
