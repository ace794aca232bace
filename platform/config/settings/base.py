"""Settings shared by every environment. Everything that differs between machines comes from the
environment; README.md ("Configuration") lists the variables."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

REPO_ROOT = Path(__file__).resolve().parents[3]
PLATFORM_ROOT = REPO_ROOT / "platform"
FRONTEND_ROOT = REPO_ROOT / "frontend"


def env_str(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return default if value is None or value == "" else value


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={value!r} is not a boolean (use true/false, 1/0, yes/no, on/off)")


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return [part.strip() for part in value.split(",") if part.strip()]


# Where the embedded defaults keep their state: SQLite file, media, broker folders, secret key.
DATA_DIR = Path(env_str("PERCEPTLAB_DATA_DIR", str(REPO_ROOT / "var"))).resolve()


def persistent_secret_key(data_dir: Path) -> str:
    """Generate a secret key on first run and keep it in the data directory (embedded default only)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "secret_key"
    if path.exists():
        return path.read_text().strip()
    key = secrets.token_urlsafe(50)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key)
    return key


DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY") or ""
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

DEFAULT_SQLITE_URL = f"sqlite:///{DATA_DIR / 'db.sqlite3'}"
DATABASE_URL = env_str("DATABASE_URL", DEFAULT_SQLITE_URL)
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=0)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL + a busy timeout let the web process and the worker share the file safely.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 20, "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"}
    )
    DATABASES["default"]["OPTIONS"]["transaction_mode"] = "IMMEDIATE"
else:
    # Each web thread and worker process keeps its connection (DATABASE_CONN_MAX_AGE seconds; 0 opens one per
    # request, Django's default). Opening one per request started a PostgreSQL backend and authenticated for
    # every answer, and planned the answer path's prepared statements afresh each time. After a PostgreSQL
    # restart, a thread's next request meets its dropped connection and answers 503 (core.middleware; the
    # clients retry) and the thread connects again; DATABASE_CONN_HEALTH_CHECKS=true checks the connection
    # at each request's first query instead: a round trip per request (+0.03 and +0.06 ms of web CPU per
    # judgment in two alternating pairs of `make loadtest` paced runs, inside their run-to-run spread).
    _max_age = env_str("DATABASE_CONN_MAX_AGE", "60")
    if not _max_age.isdigit():
        raise ImproperlyConfigured(f"DATABASE_CONN_MAX_AGE={_max_age!r} is not a number of seconds")
    DATABASES["default"]["CONN_MAX_AGE"] = int(_max_age)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = env_bool("DATABASE_CONN_HEALTH_CHECKS", False)
# PostgreSQL: the annotators' answer path uses prepared statements (judgments.apps); turn off behind a
# connection pooler in transaction mode (PgBouncer < 1.21).
PREPARED_STATEMENTS = env_bool("PERCEPTLAB_PREPARED_STATEMENTS", True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# The cache holds the API throttles' counters. Set CACHE_URL (redis://host:6379/1) wherever more than one
# web process serves: the embedded default keeps counts in each process's memory, so every gunicorn
# worker would allow the full rate on its own.
CACHE_URL = env_str("CACHE_URL")
if CACHE_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

DJANGO_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
]
THIRD_PARTY_APPS = [
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
]
LOCAL_APPS = [
    "core",
    "accounts",
    "studies",
    "judgments",
    "exports",
    "training",
    "dashboard",
    "crowdsim",
    "devtools",
]
INSTALLED_APPS = DJANGO_APPS + THIRD_PARTY_APPS + LOCAL_APPS

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "core.middleware.SecurityHeadersMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Django's session, CSRF, auth and messages middleware, standing aside for the annotator's token API
    # (core.middleware.TOKEN_API: authorised by the token in the URL, never by a cookie)
    "core.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "core.middleware.CsrfViewMiddleware",
    "core.middleware.AuthenticationMiddleware",
    "core.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "core.middleware.DatabaseUnavailableMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [FRONTEND_ROOT / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [FRONTEND_ROOT / "static"]
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(DATA_DIR / "static")))
MEDIA_URL = "/media/"
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(DATA_DIR / "media")))
# Serve MEDIA_ROOT from Django (embedded default, tests); production leaves it to a reverse proxy.
SERVE_MEDIA = env_bool("SERVE_MEDIA", False)

# --- Media storage: every stimulus, model, feature cache and export (core.storage) ----------------------
# PERCEPTLAB_STORAGE=local (default): MEDIA_ROOT on this machine. PERCEPTLAB_STORAGE=s3: an S3-compatible
# object store shared by every web and worker machine (docs/deployment-storage.md), set by
# AWS_STORAGE_BUCKET_NAME (required), AWS_S3_ENDPOINT_URL (MinIO, Ceph, R2...; unset for AWS),
# AWS_S3_REGION_NAME, AWS_S3_ADDRESSING_STYLE (path for most self-hosted servers), AWS_LOCATION (a key
# prefix), and the credentials AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or boto3's usual chain: an
# instance role, AWS_PROFILE). Objects stay private: no ACL is set, the app streams what it serves.
# Processes that need a real file keep a local copy under PERCEPTLAB_STORAGE_CACHE_DIR (a cache only:
# an empty one is refilled from the bucket).
PERCEPTLAB_STORAGE = env_str("PERCEPTLAB_STORAGE", "local")
if PERCEPTLAB_STORAGE == "local":
    _MEDIA_STORAGE = {"BACKEND": "core.storage.LocalMediaStorage"}
elif PERCEPTLAB_STORAGE == "s3":
    if not env_str("AWS_STORAGE_BUCKET_NAME"):
        raise ImproperlyConfigured("PERCEPTLAB_STORAGE=s3 needs AWS_STORAGE_BUCKET_NAME")
    _MEDIA_STORAGE = {
        "BACKEND": "core.storage_s3.S3MediaStorage",
        "OPTIONS": {
            "bucket_name": env_str("AWS_STORAGE_BUCKET_NAME"),
            "endpoint_url": env_str("AWS_S3_ENDPOINT_URL"),
            "region_name": env_str("AWS_S3_REGION_NAME"),
            "addressing_style": env_str("AWS_S3_ADDRESSING_STYLE"),
            "location": env_str("AWS_LOCATION", ""),
        },
    }
else:
    raise ImproperlyConfigured(f"PERCEPTLAB_STORAGE={PERCEPTLAB_STORAGE!r}: use local or s3")
STORAGES = {
    "default": _MEDIA_STORAGE,
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
PERCEPTLAB_STORAGE_CACHE_DIR = Path(
    env_str("PERCEPTLAB_STORAGE_CACHE_DIR", str(DATA_DIR / "cache" / "media"))
).resolve()

LOGIN_URL = "/accounts/login/"
LOGOUT_REDIRECT_URL = "/"
LOGIN_REDIRECT_URL = "/dashboard/"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "core.openapi.AutoSchema",
    "DEFAULT_PARSER_CLASSES": [
        "core.parsers.StrictJSONParser",  # JSON the database can hold, or a 400
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "EXCEPTION_HANDLER": "core.exceptions.api_exception_handler",
    "DEFAULT_THROTTLE_RATES": {
        # per assignment token: a fast annotator answers about one trial a second
        "judgments": env_str("THROTTLE_JUDGMENTS", "240/min"),
        # per client IP
        "assignment_start": env_str("THROTTLE_ASSIGNMENT_START", "120/min"),
    },
    "DEFAULT_PAGINATION_CLASS": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "perceptlab API",
    "DESCRIPTION": "Perceptual-similarity studies: 2AFC/JND judgments, datasets and metrics.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "core.openapi.add_error_responses",
    ],
    # Swagger UI from the vendored sidecar package: no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# --- Celery ---------------------------------------------------------------------------------------
# Default broker: kombu's filesystem transport under DATA_DIR (no server needed). Redis when set.
BROKER_DIR = DATA_DIR / "broker"
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://localhost//")
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND", f"file://{DATA_DIR / 'results'}")
if CELERY_BROKER_URL.startswith("filesystem"):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "out"),
        "data_folder_out": str(BROKER_DIR / "out"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
    }
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_RESULT_EXTENDED = True
CELERY_RESULT_EXPIRES = 24 * 3600
CELERY_TIMEZONE = TIME_ZONE
CELERY_TASK_DEFAULT_QUEUE = "default"
# Training and evaluation go to `gpu` (a GPU worker when present; the local worker also consumes it).
CELERY_TASK_ROUTES = {
    "metric.*": {"queue": "gpu"},
    "training.*": {"queue": "gpu"},
    "distortions.autoencoder_*": {"queue": "gpu"},
}
CELERY_TASK_TIME_LIMIT = int(env_str("CELERY_TASK_TIME_LIMIT", "3600"))
CELERY_TASK_SOFT_TIME_LIMIT = int(env_str("CELERY_TASK_SOFT_TIME_LIMIT", "3300"))
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TASK_ALWAYS_EAGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Starts of one export's build job (redelivered after a killed worker, acks_late) before it is marked failed.
PERCEPTLAB_EXPORT_MAX_ATTEMPTS = int(env_str("PERCEPTLAB_EXPORT_MAX_ATTEMPTS", "3"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {  # the S3 client logs every credential lookup and connection at INFO
        name: {"level": "WARNING"} for name in ("django.db.backends", "botocore", "s3transfer", "urllib3")
    },
}

# The CNN-autoencoder pool (distortions.cnn) the engine draws the "cnn" family from.
CNN_POOL_DIR = Path(env_str("PERCEPTLAB_CNN_POOL_DIR", str(DATA_DIR / "cnn_pool")))

# Demo study defaults (make run; docs/first-run.md).
_DEMO_POOL_STEPS = int(env_str("PERCEPTLAB_DEMO_CNN_STEPS", "0"))  # 0: the trainer's default budget
PERCEPTLAB = {
    "DEMO_STUDY_NAME": "Demo: traditional and CNN distortions (scikit-image photos)",
    "DEMO_JND_STUDY_NAME": "Demo: JND, same or different? (scikit-image photos)",
    "DEMO_CROWD_STUDY_NAME": "Simulated crowd (demo): 2AFC answered by simulated workers, not people",
    "DEMO_ADMIN_USERNAME": "admin",
    # train the default CPU pool (16 models, minutes) for the demo's CNN family, in the background
    "DEMO_CNN": env_bool("PERCEPTLAB_DEMO_CNN", True),
    "DEMO_CNN_POOL": {
        "n_models": int(env_str("PERCEPTLAB_DEMO_CNN_MODELS", "16")),
        # {} = distortions.cnn.trainer.Budget defaults; PERCEPTLAB_DEMO_CNN_STEPS shrinks it (tests)
        "budget": (
            {
                "steps": _DEMO_POOL_STEPS,
                "snapshots": sorted({max(1, _DEMO_POOL_STEPS // 2), _DEMO_POOL_STEPS}),
            }
            if _DEMO_POOL_STEPS
            else {}
        ),
    },
    "DEMO_CNN_ITEMS": 60,  # CNN-family triplets that join the 2AFC demo once the pool is ready
    # The simulated crowd's study, sized so its dashboard fills within minutes on 2 cores: about 330 test
    # judgments in HITs of 20, a retrain every `every` of them, answers paced `pace_s` apart per worker.
    "DEMO_CROWD": {
        "n_items": int(env_str("PERCEPTLAB_DEMO_CROWD_ITEMS", "120")),
        "hit_size": 20,
        "every": int(env_str("PERCEPTLAB_DEMO_CROWD_EVERY", "60")),
        "workers": 40,
        "concurrency": 3,
        "pace_s": float(env_str("PERCEPTLAB_DEMO_CROWD_PACE_S", "1.0")),
        # The hidden observer (crowdsim.simulation.Observer): a deep one with learnable structure that is
        # none of the metrics the dashboard compares (an l2_lab crowd makes l2_lab the answer key).
        "observer": "lpips:squeeze:random:sparse",
    },
    # make run sets PERCEPTLAB_MIN_RETRAIN_INTERVAL_S to this for its processes unless it is set already
    "DEMO_RETRAIN_INTERVAL_S": 15,
}


def require_secret_key(key: str) -> str:
    if len(key) < 32 or key.startswith("django-insecure"):
        raise ImproperlyConfigured("SECRET_KEY must be set to a random string of at least 32 characters")
    return key


# Salt for worker identity hashes (PROLIFIC_PID, MTurk workerId): one per deployment. Keep it stable, or
# repeat-worker blocking breaks; by default it is derived from SECRET_KEY.
WORKER_ID_SALT = env_str("WORKER_ID_SALT")

# MTurk hosts a HIT may post back to (turkSubmitTo), live and sandbox.
MTURK_SUBMIT_HOSTS = env_list(
    "MTURK_SUBMIT_HOSTS", ["https://www.mturk.com", "https://workersandbox.mturk.com"]
)

# Periodic jobs (celery beat; `make run` starts beat inside the worker).
CELERY_BEAT_SCHEDULE = {
    "training-retrain-due": {"task": "training.retrain_due", "schedule": 600.0},
    "judgments-expire-stale": {"task": "judgments.expire_stale", "schedule": 300.0},
}
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")

# --- Hostile archives: zip imports and study_restore (README "Configuration") ---------------------------
# An import upload larger than this is refused with 413 before it is parsed. Django spools file uploads
# above FILE_UPLOAD_MAX_MEMORY_SIZE to a temporary file; other request bodies stop at
# DATA_UPLOAD_MAX_MEMORY_SIZE.
PERCEPTLAB_MAX_UPLOAD_BYTES = int(env_str("PERCEPTLAB_MAX_UPLOAD_BYTES", str(256 * 1024**2)))
DATA_UPLOAD_MAX_MEMORY_SIZE = int(env_str("DATA_UPLOAD_MAX_MEMORY_SIZE", str(2_621_440)))  # Django's default
FILE_UPLOAD_MAX_MEMORY_SIZE = int(env_str("FILE_UPLOAD_MAX_MEMORY_SIZE", str(2_621_440)))
# Limits read from a zip's directory and its images' headers before anything is decoded or written; each
# can be set with PERCEPTLAB_LIMIT_<NAME> (e.g. PERCEPTLAB_LIMIT_IMPORT_MAX_TOTAL_PIXELS=100000000).
PERCEPTLAB_LIMITS = {
    name: int(env_str(f"PERCEPTLAB_LIMIT_{name.upper()}", str(default)))
    for name, default in {
        "import_max_files": 60_000,  # image members of one upload
        "import_max_file_bytes": 8 * 1024**2,  # one member, uncompressed
        "import_max_total_bytes": 1024**3,  # all members, uncompressed
        "import_max_side": 1024,  # pixels per image side (real patches are 64x64)
        "import_max_total_pixels": 256 * 1024**2,  # all images together, from their headers
        "max_compression_ratio": 200,  # uncompressed / compressed size of one member (zip bombs)
        "restore_max_files": 500_000,
        "restore_max_total_bytes": 8 * 1024**3,
        "restore_max_file_bytes": 8 * 1024**2,  # one image; a table may be 64 times larger
        "restore_max_image_pixels": 4096 * 4096,  # one restored stimulus, from its PNG header
    }.items()
}
# --- Logins, passwords, access logs, completion URLs (docs/platform.md, "Security") ---------------------
# Login throttling (django-axes) on /accounts/login/ and the admin: after AXES_FAILURE_LIMIT failed logins for
# one (username, client address) the pair is locked out for AXES_COOLOFF_TIME and gets a 429 page.
INSTALLED_APPS = [*INSTALLED_APPS, "axes"]
MIDDLEWARE = [*MIDDLEWARE, "axes.middleware.AxesMiddleware"]  # last, as axes asks
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = int(env_str("PERCEPTLAB_LOGIN_FAILURES", "5"))
AXES_COOLOFF_TIME = int(env_str("PERCEPTLAB_LOGIN_COOLOFF_MINUTES", "15")) / 60  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_DISABLE_ACCESS_LOG = True  # keep failed attempts only (they expire with the cool-off), not every login
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_HTTP_RESPONSE_CODE = 429
# The client: core.net.client_address, the rule every throttle and cap uses (PERCEPTLAB_TRUSTED_PROXIES and
# PERCEPTLAB_IPV6_CLIENT_PREFIX below), so rotating IPv6 addresses inside one network buys no extra guesses.
AXES_CLIENT_IP_CALLABLE = "core.net.client_address"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# Prolific completion URLs must point at one of these hosts (https, exactly one {code}).
PROLIFIC_COMPLETION_HOSTS = env_list("PROLIFIC_COMPLETION_HOSTS", ["app.prolific.com", "app.prolific.co"])

# Logs never show query strings (the crowd link carries PROLIFIC_PID/workerId) or HIT tokens (the annotator
# API's paths): every record of the console handler (django.request's line for each 4xx/5xx answer among
# them) and runserver's request log (`make run`) pass through core.logs.RedactedRequests. gunicorn's logs
# get the same rule from their format and logger class (core.logs.GUNICORN_ACCESS_LOG_FORMAT,
# core.access_log.GunicornLogger, docker-compose.yml).
LOGGING["filters"] = {**LOGGING.get("filters", {}), "redacted": {"()": "core.logs.RedactedRequests"}}
LOGGING["handlers"]["console"]["filters"] = ["redacted"]
# Django's records reach that handler alone (through the root logger), not the handlers Django's default
# logging puts on "django" (a console handler under DEBUG, mail_admins), which no filter guards
LOGGING["loggers"]["django"] = {"handlers": [], "level": "NOTSET", "propagate": True}
LOGGING["formatters"]["django.server"] = {
    "()": "django.utils.log.ServerFormatter",
    "format": "[{server_time}] {message}",
    "style": "{",
}
LOGGING["handlers"]["django.server"] = {
    "class": "logging.StreamHandler",
    "formatter": "django.server",
    "filters": ["redacted"],
}
LOGGING["loggers"]["django.server"] = {"handlers": ["django.server"], "level": "INFO", "propagate": False}
# --- The annotator side (judgments, core.net): client identity, per-client caps, leases, stimulus images ---
# How many reverse proxies we trust in front of the web process. 0 (default): the client address is
# REMOTE_ADDR and X-Forwarded-For / X-Forwarded-Proto are ignored (any client can write them). N > 0: the
# address is the X-Forwarded-For entry N hops from the right (the one our outermost proxy appended), and
# production honours X-Forwarded-Proto.
try:
    PERCEPTLAB_TRUSTED_PROXIES = int(env_str("PERCEPTLAB_TRUSTED_PROXIES", "0"))
except ValueError as exc:
    raise ImproperlyConfigured("PERCEPTLAB_TRUSTED_PROXIES must be a whole number (0: no proxy)") from exc
if not 0 <= PERCEPTLAB_TRUSTED_PROXIES <= 10:
    raise ImproperlyConfigured("PERCEPTLAB_TRUSTED_PROXIES must be in 0..10")
# What counts as one IPv6 client for those limits: the network of this many leading bits (48..64). A
# subscriber gets a /64 at least, often a /56 or a /48 (free from tunnel brokers).
PERCEPTLAB_IPV6_CLIENT_PREFIX = int(env_str("PERCEPTLAB_IPV6_CLIENT_PREFIX", "48"))
if not 32 <= PERCEPTLAB_IPV6_CLIENT_PREFIX <= 64:
    raise ImproperlyConfigured("PERCEPTLAB_IPV6_CLIENT_PREFIX must be in 32..64")
_open_per_client = env_str("PERCEPTLAB_OPEN_PER_CLIENT", "3")
if not _open_per_client.isdigit():
    raise ImproperlyConfigured("PERCEPTLAB_OPEN_PER_CLIENT must be a whole number (0: no cap)")
_flush_ms = env_str("PERCEPTLAB_ANSWER_FLUSH_MS", "2000")
if not (_flush_ms.isdigit() and int(_flush_ms) <= 60000):
    raise ImproperlyConfigured("PERCEPTLAB_ANSWER_FLUSH_MS must be a whole number of ms in 0..60000")
PERCEPTLAB_CROWD = {
    # started assignments one client address (IPv4, or IPv6 network of PERCEPTLAB_IPV6_CLIENT_PREFIX bits)
    # may hold open in one study; 0: no cap
    "OPEN_PER_CLIENT": int(_open_per_client),
    # a new assignment's lease until its first answer (at most the study's lease_ttl_s)
    "FIRST_LEASE_S": 300,
    # the annotator page sends its answers in batches: an answer waits at most this long (while no send is in
    # flight) for others to go with it; it is in the browser's localStorage from the moment it is given, and
    # a HIT's last answer, a page the participant leaves and a reload send at once (0: each answer at once)
    "ANSWER_FLUSH_MS": int(_flush_ms),
    # stimulus images through a reverse proxy: e.g. "X-Accel-Redirect" (nginx) or "X-Sendfile" (Apache);
    # the header's value is IMAGE_ACCEL_PREFIX + the media-relative path (an internal location)
    "IMAGE_ACCEL_HEADER": env_str("PERCEPTLAB_IMAGE_ACCEL_HEADER"),
    "IMAGE_ACCEL_PREFIX": env_str("PERCEPTLAB_IMAGE_ACCEL_PREFIX", "/internal-media/"),
}
if PERCEPTLAB_CROWD["IMAGE_ACCEL_HEADER"] and PERCEPTLAB_STORAGE != "local":
    raise ImproperlyConfigured(
        "PERCEPTLAB_IMAGE_ACCEL_HEADER needs PERCEPTLAB_STORAGE=local: a proxy cannot send a file from the "
        "object store (the app streams images itself)"
    )
# --- Build-config sources and limits; training settings and the training claim (security) ----------------
# A build config (POST /api/v1/studies/ `build_config`) names only the bundled scikit-image photographs or a
# source photo set its researcher uploaded (POST /api/v1/sources/); every count and size in it has a cap.
PERCEPTLAB_BUILD_LIMITS = {
    "n_items": 20_000,  # test items of one study
    "patch_size": 256,  # pixels a side
    "sentinels": 500,  # sentinels.n
    "practice": 50,  # practice.n
    "max_ops": 4,  # composition.max_ops: the longest distortion chain
    "distortions": 64,  # entries of the `distortions` list
    "cnn_items": 5_000,  # n_items x the CNN family's share of first ops (autoencoder runs are costly)
    "seed": 2**63 - 1,
}
# Source photo sets: zip archives of PNG/JPEG photographs, checked like a hostile archive, then stored
# privately in the media storage as sources/<set>/ (never served), one content-addressed file per photo.
PERCEPTLAB_SOURCE_LIMITS = {
    "max_archive_bytes": 256 * 1024 * 1024,
    "max_files": 200,
    "max_file_bytes": 32 * 1024 * 1024,
    "max_total_bytes": 512 * 1024 * 1024,  # uncompressed
    "max_compression_ratio": 50,  # zip bombs (PNG and JPEG hardly compress)
    "max_pixels": 4096 * 4096,  # per photo, read from the header before decoding
    "max_total_pixels": 100_000_000,  # per set: a build holds every photo in memory
    "min_side": 64,  # pixels; a build config's patch_size must also fit the set's smallest photo
    "max_sets_per_owner": 50,
}
# Continuous training: caps on Study.config["training"] (studies.collection).
PERCEPTLAB_TRAINING_LIMITS = {
    "every": 10_000_000,
    "backbones": 3,
    "n_boot": 10_000,
    "epochs": 100,
    "epochs_decay": 100,
    "min_steps": 100_000,
    "lr": (1e-6, 1.0),  # (lowest, highest)
    "seed": 2**31 - 1,  # backbones[].seed
}
# A forced retrain (API, dashboard) within this many seconds of the last one gets a 429 with Retry-After;
# an automatic one is deferred to the periodic check (training.retrain_due).
PERCEPTLAB_MIN_RETRAIN_INTERVAL_S = int(env_str("PERCEPTLAB_MIN_RETRAIN_INTERVAL_S", "300"))
# Patches drawn from a study's own train items for a k-means trunk (the "auto" backbone offline).
PERCEPTLAB_KMEANS_PATCHES = int(env_str("PERCEPTLAB_KMEANS_PATCHES", "512"))
# The training claim: a running job refreshes its heartbeat every HEARTBEAT seconds; a claim whose heartbeat
# is older than STALE seconds belongs to a dead worker and the next (redelivered) job takes it over.
PERCEPTLAB_TRAINING_HEARTBEAT_S = float(env_str("PERCEPTLAB_TRAINING_HEARTBEAT_S", "30"))
PERCEPTLAB_TRAINING_STALE_S = float(env_str("PERCEPTLAB_TRAINING_STALE_S", "300"))
# Redis broker: a job of a worker that died unacknowledged is delivered again after this many seconds
# (kombu's default, an hour, when unset; the claim recovery test sets a few seconds and sweeps often).
if CELERY_BROKER_URL.startswith("redis") and env_str("CELERY_VISIBILITY_TIMEOUT"):
    _visibility = int(env_str("CELERY_VISIBILITY_TIMEOUT"))
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": _visibility,
        "unacked_restore_throttle": 1,
        "unacked_restore_interval": max(1, min(10, _visibility // 4)),
    }
