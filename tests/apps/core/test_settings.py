"""Settings come from the environment; production refuses unsafe defaults."""

SAFE_PROD = {
    "SECRET_KEY": "x" * 50,
    "ALLOWED_HOSTS": "percept.example.org",
    "DATABASE_URL": "postgres://u:p@db:5432/percept",
    "CELERY_BROKER_URL": "redis://redis:6379/0",
    "CACHE_URL": "redis://redis:6379/2",
}


def test_embedded_defaults_are_sqlite_and_a_filesystem_broker(tmp_path, settings_probe):
    r = settings_probe(
        "config.settings.local",
        {"PERCEPTLAB_DATA_DIR": str(tmp_path)},
        "settings.DATABASES['default']['ENGINE'], settings.DATABASES['default']['NAME'], "
        "settings.CELERY_BROKER_URL",
    )
    assert r.returncode == 0, r.stderr
    assert "sqlite3" in r.stdout and str(tmp_path / "db.sqlite3") in r.stdout and "filesystem://" in r.stdout


def test_environment_selects_postgres_and_redis(tmp_path, settings_probe):
    r = settings_probe(
        "config.settings.local",
        {
            "PERCEPTLAB_DATA_DIR": str(tmp_path),
            "DATABASE_URL": "postgres://u@h:5433/db",
            "CELERY_BROKER_URL": "redis://h:6379/2",
        },
        "settings.DATABASES['default']['ENGINE'], settings.DATABASES['default']['PORT'], "
        "settings.CELERY_BROKER_URL",
    )
    assert r.returncode == 0, r.stderr
    assert "postgresql" in r.stdout and "5433" in r.stdout and "redis://h:6379/2" in r.stdout


def test_local_secret_key_is_generated_once_and_kept(tmp_path, settings_probe):
    env = {"PERCEPTLAB_DATA_DIR": str(tmp_path)}
    first = settings_probe("config.settings.local", env, "settings.SECRET_KEY")
    second = settings_probe("config.settings.local", env, "settings.SECRET_KEY")
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout and len(first.stdout.strip()) >= 50
    assert oct((tmp_path / "secret_key").stat().st_mode)[-3:] == "600"


def test_production_refuses_unsafe_defaults(tmp_path, settings_probe):
    r = settings_probe(
        "config.settings.production", {"PERCEPTLAB_DATA_DIR": str(tmp_path), "DEBUG": "true"}, "1"
    )
    assert r.returncode != 0
    for problem in (
        "DEBUG must be false",
        "SECRET_KEY must be set",
        "DATABASE_URL must point at PostgreSQL",
        "CELERY_BROKER_URL must point at Redis",
        "CACHE_URL must point at Redis",
    ):
        assert problem in r.stderr
    r = settings_probe("config.settings.production", {**SAFE_PROD, "ALLOWED_HOSTS": "*"}, "1")
    assert "ALLOWED_HOSTS" in r.stderr and r.returncode != 0
    # a judgments rate below one full batch of answers (20) would hold the annotator page's batches back
    for rate in ("10/min", "lots"):
        r = settings_probe("config.settings.production", {**SAFE_PROD, "THROTTLE_JUDGMENTS": rate}, "1")
        assert "THROTTLE_JUDGMENTS" in r.stderr and r.returncode != 0


def test_production_starts_with_safe_settings(settings_probe):
    r = settings_probe(
        "config.settings.production",
        SAFE_PROD,
        "settings.DEBUG, settings.SESSION_COOKIE_SECURE, settings.CACHES['default']['BACKEND']",
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False True django.core.cache.backends.redis.RedisCache"


def test_bad_boolean_is_a_clear_error(tmp_path, settings_probe):
    r = settings_probe("config.settings.local", {"PERCEPTLAB_DATA_DIR": str(tmp_path), "DEBUG": "maybe"}, "1")
    assert r.returncode != 0 and "DEBUG='maybe' is not a boolean" in r.stderr


def test_postgresql_connections_are_kept(tmp_path, settings_probe):
    """Opening a connection per request (Django's default) started a PostgreSQL backend for every answer and
    planned the answer path's prepared statements again each time. Health checks are a choice."""
    env = {"PERCEPTLAB_DATA_DIR": str(tmp_path), "DATABASE_URL": "postgres://u@h:5433/db"}
    expr = (
        "settings.DATABASES['default']['CONN_MAX_AGE'], settings.DATABASES['default']['CONN_HEALTH_CHECKS']"
    )
    for module in ("config.settings.local", "devtools.settings_loadtest"):
        r = settings_probe(module, env, expr)
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == ["60", "False"]
    prod = {**SAFE_PROD, "DATABASE_CONN_MAX_AGE": "300", "DATABASE_CONN_HEALTH_CHECKS": "true"}
    r = settings_probe("config.settings.production", prod, expr)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["300", "True"]
    bad = settings_probe("config.settings.local", {**env, "DATABASE_CONN_MAX_AGE": "forever"}, "1")
    assert bad.returncode != 0 and "DATABASE_CONN_MAX_AGE='forever' is not a number of seconds" in bad.stderr
    sqlite = settings_probe(
        "config.settings.local", {"PERCEPTLAB_DATA_DIR": str(tmp_path)}, expr.split(",")[0]
    )
    assert sqlite.returncode == 0 and sqlite.stdout.split() == ["0"]
