import pytest

pytestmark = pytest.mark.django_db


def test_ping_answers_anonymously(api_client):
    r = api_client.get("/api/v1/ping/")
    assert r.status_code == 200 and r.json()["status"] == "ok"


def test_healthz_and_home_answer_200(client):
    assert client.get("/healthz").json()["status"] == "ok"
    assert client.get("/").status_code == 200


def test_openapi_schema_is_served(client):
    r = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert r.status_code == 200
    assert "/api/v1/studies/" in r.json()["paths"]


def test_errors_have_one_shape(api_client):
    r = api_client.get("/api/v1/studies/")
    assert r.status_code in (401, 403)
    assert set(r.json()) == {"message", "extra"} and r.json()["message"]


def test_unknown_api_path_is_404_not_500(api_client, researcher_carol):
    api_client.force_authenticate(researcher_carol)
    r = api_client.get("/api/v1/studies/00000000-0000-0000-0000-000000000000/")
    assert r.status_code == 404 and set(r.json()) == {"message", "extra"}


def test_a_lost_database_connection_answers_503_with_retry_after(api_client, researcher_carol, monkeypatch):
    """A database restart is an outage clients retry through (503 + Retry-After), not a 500."""
    from django.db import OperationalError, connections

    from studies import apis

    def down(*args, **kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(apis, "study_list_for", down)
    monkeypatch.setattr(connections["default"], "vendor", "postgresql")
    api_client.force_authenticate(researcher_carol)
    r = api_client.get("/api/v1/studies/")
    assert r.status_code == 503 and r["Retry-After"] == "1" and r.json()["extra"]["code"] == "db_unavailable"
    monkeypatch.setattr(
        connections["default"], "vendor", "sqlite"
    )  # on SQLite only "database is locked" is an outage
    with pytest.raises(OperationalError):
        api_client.get("/api/v1/studies/")
