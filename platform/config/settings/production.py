"""Production settings: refuse to start with unsafe defaults."""

import os

from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F403
from .base import (
    ALLOWED_HOSTS,
    CACHE_URL,
    CELERY_BROKER_URL,
    DATABASES,
    DEBUG,
    PERCEPTLAB_TRUSTED_PROXIES,
    REST_FRAMEWORK,
    SECRET_KEY,
    env_bool,
    require_secret_key,
)

problems: list[str] = []
if DEBUG:
    problems.append("DEBUG must be false")
try:
    require_secret_key(SECRET_KEY)
except ImproperlyConfigured as exc:
    problems.append(str(exc))
if not ALLOWED_HOSTS or "*" in ALLOWED_HOSTS:
    problems.append("ALLOWED_HOSTS must list the real host names (no '*')")
# The annotator page sends up to 20 answers in one batch (judgments.answers.BATCH_MAX), which the judgments
# throttle counts as 20: a lower rate would hold such a batch back for good.
_number, _, _period = REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["judgments"].partition("/")
if not (_number.isdigit() and int(_number) >= 20 and _period[:1] in ("s", "m", "h", "d")):
    problems.append(
        "THROTTLE_JUDGMENTS must be a rate like 240/min allowing at least 20 requests per period (a batch "
        "of answers counts each)"
    )
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    problems.append("DATABASE_URL must point at PostgreSQL (SQLite is the embedded default only)")
if CELERY_BROKER_URL.startswith("filesystem"):
    problems.append(
        "CELERY_BROKER_URL must point at Redis (the filesystem broker is the embedded default only)"
    )
if not CACHE_URL:
    problems.append("CACHE_URL must point at Redis (throttle counts shared by every web process)")
if problems:
    raise ImproperlyConfigured("unsafe production settings: " + "; ".join(problems))

SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
# X-Forwarded-Proto only from a proxy we trust (PERCEPTLAB_TRUSTED_PROXIES > 0); otherwise any client could
# claim https.
if PERCEPTLAB_TRUSTED_PROXIES > 0:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"}}  # noqa: F405

# HSTS: browsers refuse plain HTTP to this host for SECURE_HSTS_SECONDS (default one year; at least 180 days:
# a shorter value is refused, since an annotator's first plain-HTTP request after it lapses can be hijacked).
HSTS_MIN_SECONDS = 180 * 24 * 3600
try:
    SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS") or 365 * 24 * 3600)
except ValueError as exc:
    raise ImproperlyConfigured("SECURE_HSTS_SECONDS must be a whole number of seconds") from exc
if SECURE_HSTS_SECONDS < HSTS_MIN_SECONDS:
    raise ImproperlyConfigured(
        f"unsafe production settings: SECURE_HSTS_SECONDS must be at least {HSTS_MIN_SECONDS} "
        f"(180 days), got {SECURE_HSTS_SECONDS}"
    )
