"""The annotator's token API skips the cookie-based middleware (core.middleware.TOKEN_API): it works without
cookies, ignores a session cookie sent to it (no session read, no user attached, no cookie set), and still
gets the security headers and the database-outage answer; CSRF still guards every cookie-authenticated
endpoint. The route table is pinned to the pattern both ways."""

from __future__ import annotations

import re
import uuid

import pytest
from django.db import OperationalError, connections
from django.test import Client
from django.urls import URLPattern

from config.api_router import urlpatterns
from core.middleware import is_token_api
from judgments import apis
from judgments.apis import AnnotatorApi

pytestmark = pytest.mark.django_db

SAMPLES = {"handle": "tok3n-_x", "uuid": str(uuid.uuid4()), "int": "1", "slug": "left", "str": "abc123"}


def _sample_path(pattern: URLPattern) -> str:
    route = re.sub(r"<(\w+):\w+>", lambda m: SAMPLES[m.group(1)], str(pattern.pattern))
    return "/api/v1/" + route


@pytest.mark.parametrize("pattern", urlpatterns, ids=lambda p: p.name)
def test_the_token_api_is_exactly_the_annotator_routes(pattern):
    view = pattern.callback.view_class
    annotator = issubclass(view, AnnotatorApi)
    assert is_token_api(_sample_path(pattern)) == annotator
    if annotator:  # authorised by the token in the URL: no authentication class could read a cookie
        assert view.authentication_classes == []


def _every_route(resolver=None, prefix: str = "/"):
    """(sample path, view) for every route of the whole URL configuration, included modules and the admin's
    too; a regex route's sample is its pattern with the anchors and groups taken out (a lower bound: such a
    route has no fixed sample, so only its literal prefix is checked)."""
    from django.urls import URLResolver, get_resolver

    for entry in (resolver or get_resolver()).url_patterns:
        text = str(entry.pattern)
        text = re.sub(r"<(\w+):\w+>", lambda m: SAMPLES.get(m.group(1), "x"), text)
        text = re.sub(r"<\w+>", "x", text)
        text = re.sub(r"\(\?P<\w+>[^)]*\)|[\^$]", "", text)  # regex routes: groups and anchors out
        if isinstance(entry, URLResolver):
            yield from _every_route(entry, prefix + text)
        else:
            yield prefix + text, entry.callback


def test_no_route_outside_the_annotator_api_falls_under_the_skip():
    """Every route of the whole configuration (not only config.api_router's) whose path the skip matches is
    an annotator view, so a cookie-authenticated view added later under such a path fails this test."""
    checked = 0
    for path, callback in _every_route():
        view = getattr(callback, "view_class", None)
        if is_token_api(path):
            assert view is not None and issubclass(view, AnnotatorApi), (path, callback)
            checked += 1
    assert checked >= 5  # the start, the examples and the assignment routes were found


def test_csrf_still_applies_to_a_cookie_view_that_lands_on_a_skipped_path(rf):
    """Defence in depth: on a token path CSRF stands aside only for an annotator view; any other view there
    is checked as everywhere (an unsafe request without the token is refused)."""
    from django.http import HttpResponse

    from core.middleware import CsrfViewMiddleware

    def cookie_view(request):
        return HttpResponse("ok")

    request = rf.post(f"/api/v1/assignments/{SAMPLES['handle']}/judgments/", {})
    request.COOKIES["csrftoken"] = "x" * 32
    middleware = CsrfViewMiddleware(lambda r: HttpResponse("ok"))
    refused = middleware.process_view(request, cookie_view, (), {})
    assert refused is not None and refused.status_code == 403
    assert middleware.process_view(request, apis.JudgmentSubmitApi.as_view(), (), {}) is None


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/studies/",
        f"/api/v1/studies/{SAMPLES['uuid']}/",
        f"/api/v1/studies/{SAMPLES['uuid']}/assignments/extra/",
        f"/api/v1/studies/{SAMPLES['uuid']}/workers/",
        f"/api/v1/studies/{SAMPLES['uuid']}/examples/1/left/more/",
        "/api/v1/assignment/x/",
        "/dashboard/",
        "/admin/",
        "/s/x/",
        "/x/api/v1/assignments/t/",
    ],
)
def test_other_paths_keep_the_cookie_middleware(path):
    assert not is_token_api(path)


def _start(client, study):
    body = {"platform": "anonymous", "consent": True}
    return client.post(f"/api/v1/studies/{study.pk}/assignments/", body, content_type="application/json")


def _answer(client, token, trial):
    body = {"trial": trial["id"], "response": "left", "rt_ms": 600, "idempotency_key": uuid.uuid4().hex}
    return client.post(f"/api/v1/assignments/{token}/judgments/", body, content_type="application/json")


def _no_cookie_business(response):
    assert not response.cookies, response.cookies
    assert "Cookie" not in response.get("Vary", "")


def test_the_annotator_api_works_without_cookies(make_study):
    client = Client(enforce_csrf_checks=True)
    study = make_study(n_test=3, n_sentinels=1, n_practice=1)
    r = _start(client, study)
    assert r.status_code == 201, r.content
    _no_cookie_business(r)
    token = r.json()["token"]
    for trial in r.json()["trials"]:
        a = _answer(client, token, trial)
        assert a.status_code == 201, a.content
        _no_cookie_business(a)
    done = client.post(f"/api/v1/assignments/{token}/submit/")
    assert done.status_code == 200 and done.json()["status"] == "submitted"
    _no_cookie_business(done)
    assert client.get(f"/api/v1/assignments/{token}/").status_code == 200


def test_a_session_cookie_sent_to_the_annotator_api_is_ignored(make_study, researcher_carol, monkeypatch):
    seen = []
    real = apis.client_ip

    def spy(request):  # the start view's request, as the view sees it
        seen.append((request.user.is_authenticated, hasattr(request._request, "session")))
        return real(request)

    monkeypatch.setattr(apis, "client_ip", spy)
    client = Client(enforce_csrf_checks=True)
    client.force_login(researcher_carol)
    assert "sessionid" in client.cookies
    study = make_study(n_test=2, n_sentinels=0, n_practice=0)
    r = _start(client, study)  # a cookie, and no CSRF token: neither matters here
    assert r.status_code == 201, r.content
    assert seen == [(False, False)]
    _no_cookie_business(r)
    a = _answer(client, r.json()["token"], r.json()["trials"][0])
    assert a.status_code == 201
    _no_cookie_business(a)


def test_csrf_still_guards_cookie_authenticated_endpoints(make_study, researcher_carol):
    study = make_study(owner=researcher_carol, n_test=2, n_sentinels=0, n_practice=0)
    client = Client(enforce_csrf_checks=True)
    client.force_login(researcher_carol)
    # the researcher's API (DRF's session authentication) and the dashboard (Django's CSRF middleware)
    api = client.post(f"/api/v1/studies/{study.pk}/pause/", {}, content_type="application/json")
    assert api.status_code == 403 and "CSRF" in api.json()["message"]
    assert client.post(f"/dashboard/{study.pk}/pause/").status_code == 403
    study.refresh_from_db()
    assert study.status == "active"
    # with the token the page carries, the same session may post
    client.get(f"/dashboard/{study.pk}/")
    token = client.cookies["csrftoken"].value
    ok = client.post(
        f"/api/v1/studies/{study.pk}/pause/", {}, content_type="application/json", HTTP_X_CSRFTOKEN=token
    )
    assert ok.status_code == 200, ok.content


def test_the_annotator_api_keeps_the_security_headers(make_study):
    study = make_study(n_test=2, n_sentinels=0, n_practice=0)
    r = _start(Client(), study)
    assert r.status_code == 201
    assert r["X-Content-Type-Options"] == "nosniff" and r["Referrer-Policy"] == "same-origin"
    assert "default-src 'self'" in r["Content-Security-Policy"] and "camera=()" in r["Permissions-Policy"]
    assert r["X-Frame-Options"] == "DENY" and r["Cross-Origin-Opener-Policy"] == "same-origin"


def test_the_annotator_api_answers_503_while_the_database_is_down(make_study, monkeypatch):
    study = make_study(n_test=2, n_sentinels=0, n_practice=0)
    r = _start(Client(), study)

    def down(**kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(apis, "answer_submit", down)
    monkeypatch.setattr(connections["default"], "vendor", "postgresql")
    a = _answer(Client(), r.json()["token"], r.json()["trials"][0])
    assert a.status_code == 503 and a["Retry-After"] == "1" and a.json()["extra"]["code"] == "db_unavailable"
