from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from django.db import connection


def package_version() -> str:
    try:
        return version("perceptlab")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "0+unknown"


def system_status() -> dict:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {"status": "ok", "database": connection.vendor, "version": package_version()}
