"""Issue 18 attack review: the API token page (/accounts/token/) puts the researcher's secret token in the
HTML (the input and the curl example) but sends no Cache-Control, so browsers (disk cache, back/forward
after logout on a shared machine) and caching proxies may keep a copy of a live credential. The try page
and the build fragment already send no-store; the token page must too."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts.services import api_token_create

pytestmark = pytest.mark.django_db


def test_it_sends_the_token_page_with_no_store(researcher_carol):
    token = api_token_create(user=researcher_carol)
    client = Client()
    client.force_login(researcher_carol)
    response = client.get("/accounts/token/")
    assert response.status_code == 200
    assert token.key in response.content.decode()
    cache_control = response.get("Cache-Control", "")
    assert "no-store" in cache_control, f"the page holding the API token is cacheable: {cache_control!r}"
