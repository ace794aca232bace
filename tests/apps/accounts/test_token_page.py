"""The API token page (/accounts/token/): show, create, regenerate, revoke (POST, CSRF), a curl example;
and the navigation every researcher page shares."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


def _key(html: str) -> str | None:
    found = re.search(r'<input id="api-token" type="text" value="([0-9a-f]+)" readonly', html)
    return found.group(1) if found else None


def _api_status(key: str) -> int:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client.get("/api/v1/studies/").status_code


def test_it_creates_regenerates_and_revokes_a_token_that_works(client, researcher_carol):
    client.force_login(researcher_carol)
    html = client.get("/accounts/token/").content.decode()
    assert 'id="token-create"' in html and _key(html) is None and "&lt;your token&gt;" in html
    assert client.post("/accounts/token/", {"action": "create"}).status_code == 302
    html = client.get("/accounts/token/").content.decode()
    first = _key(html)
    assert first == Token.objects.get(user=researcher_carol).key
    assert 'class="copy"' in html and 'id="token-regenerate"' in html and 'id="token-revoke"' in html
    assert f'curl -H "Authorization: Token {first}" http://testserver/api/v1/studies/' in html
    assert "js/copy.js" in html and '<label for="api-token">' in html
    assert _api_status(first) == 200
    client.post("/accounts/token/", {"action": "regenerate"})
    second = _key(client.get("/accounts/token/").content.decode())
    assert second and second != first and _api_status(first) == 401 and _api_status(second) == 200
    client.post("/accounts/token/", {"action": "revoke"})
    assert not Token.objects.filter(user=researcher_carol).exists() and _api_status(second) == 401
    assert 'id="token-create"' in client.get("/accounts/token/").content.decode()


def test_it_refuses_unknown_actions_and_needs_csrf(researcher_carol):
    client = Client(enforce_csrf_checks=True)
    client.force_login(researcher_carol)
    assert client.post("/accounts/token/", {"action": "create"}).status_code == 403
    assert not Token.objects.exists()
    relaxed = Client()
    relaxed.force_login(researcher_carol)
    r = relaxed.post("/accounts/token/", {"action": "<script>"}, follow=True)
    assert r.status_code == 200 and "Unknown action" in r.content.decode() and not Token.objects.exists()


def test_it_needs_a_login_and_shows_only_ones_own_token(client, researcher_carol, researcher_dave):
    r = client.get("/accounts/token/")
    assert r.status_code == 302 and r["Location"].startswith("/accounts/login/")
    assert client.post("/accounts/token/", {"action": "create"}).status_code == 302
    assert not Token.objects.exists()
    carols = Token.objects.create(user=researcher_carol)
    client.force_login(researcher_dave)
    html = client.get("/accounts/token/").content.decode()
    assert carols.key not in html and 'id="token-create"' in html
    client.post("/accounts/token/", {"action": "revoke"})
    assert Token.objects.filter(pk=carols.pk).exists()  # Dave revokes only his own


def test_the_nav_shows_the_researcher_pages_and_a_logout_button(client, researcher_carol, django_user_model):
    html = client.get("/").content.decode()
    nav = re.search(r'<nav aria-label="main">.*?</nav>', html, re.S).group(0)
    assert "Log in" in nav and "Log out" not in nav and "API token" not in nav
    client.force_login(researcher_carol)
    nav = re.search(
        r'<nav aria-label="main">.*?</nav>', client.get("/dashboard/").content.decode(), re.S
    ).group(0)
    for label, href in (
        ("Studies", "/dashboard/"),
        ("New study", "/dashboard/new/"),
        ("API token", "/accounts/token/"),
    ):
        assert f'<a href="{href}">{label}</a>' in nav
    assert "API docs" in nav and "Admin" not in nav
    assert '<form method="post" action="/accounts/logout/"' in nav and "carol" in nav
    staff = django_user_model.objects.create_user(username="sam", password="x" * 16, is_staff=True)
    client.force_login(staff)
    assert '<a href="/admin/">Admin</a>' in client.get("/dashboard/").content.decode()
    r = Client().get("/accounts/token/")  # logging out ends the session
    client.post("/accounts/logout/")
    assert client.get("/dashboard/").status_code == 302 and r.status_code == 302
