"""Attacks on who the server thinks the client is: a client's own X-Forwarded-For and X-Forwarded-Proto.
Each test performs the attack and asserts it now fails."""

import pytest
from django.test import RequestFactory
from rest_framework.test import APIClient

from core.net import client_ip, client_key

pytestmark = pytest.mark.django_db


@pytest.fixture
def start_rate(settings):
    """Throttle rates for this test (DRF reads them once per process)."""
    from django.core.cache import cache
    from rest_framework.settings import api_settings
    from rest_framework.throttling import SimpleRateThrottle

    saved = SimpleRateThrottle.THROTTLE_RATES

    def set_rate(rate: str):
        cache.clear()
        settings.REST_FRAMEWORK = {
            **settings.REST_FRAMEWORK,
            "DEFAULT_THROTTLE_RATES": {"judgments": "100000/min", "assignment_start": rate},
        }
        SimpleRateThrottle.THROTTLE_RATES = api_settings.DEFAULT_THROTTLE_RATES

    yield set_rate
    SimpleRateThrottle.THROTTLE_RATES = saved
    cache.clear()


def _start(client, study, **headers):
    return client.post(
        f"/api/v1/studies/{study.pk}/assignments/",
        {"platform": "anonymous", "consent": True},
        format="json",
        REMOTE_ADDR="198.51.100.7",
        **headers,
    )


def test_rotating_x_forwarded_for_gives_no_extra_starts(make_study, start_rate, settings):
    """The attack: a new X-Forwarded-For on every start, so that the per-IP start throttle sees a new
    client each time. Without a trusted proxy the header is ignored: the 4th start at 3/min is refused."""
    settings.PERCEPTLAB_CROWD = {**settings.PERCEPTLAB_CROWD, "OPEN_PER_CLIENT": 0}  # the throttle alone
    start_rate("3/min")
    study = make_study(n_test=40, n_sentinels=0, n_practice=0, config={"hit_size": 1})
    client = APIClient()
    codes = [_start(client, study, HTTP_X_FORWARDED_FOR=f"10.0.{k}.{k}").status_code for k in range(6)]
    assert codes[:3] == [201, 201, 201] and set(codes[3:]) == {429}, codes


def test_prepending_x_forwarded_for_entries_behind_a_trusted_proxy_gives_no_extra_starts(
    make_study, start_rate, settings
):
    """Behind one trusted proxy the client can still write entries *before* the one the proxy appends; only
    the proxy's entry (rightmost) counts."""
    settings.PERCEPTLAB_TRUSTED_PROXIES = 1
    settings.PERCEPTLAB_CROWD = {**settings.PERCEPTLAB_CROWD, "OPEN_PER_CLIENT": 0}
    start_rate("3/min")
    study = make_study(n_test=40, n_sentinels=0, n_practice=0, config={"hit_size": 1})
    client = APIClient()
    codes = [
        _start(client, study, HTTP_X_FORWARDED_FOR=f"10.0.{k}.{k}, 203.0.113.5").status_code for k in range(5)
    ]
    assert codes[:3] == [201, 201, 201] and set(codes[3:]) == {429}, codes
    # a different real client (as the proxy saw it) has its own budget
    assert _start(client, study, HTTP_X_FORWARDED_FOR="10.9.9.9, 203.0.113.6").status_code == 201


def test_client_ip_believes_only_the_trusted_hops(settings):
    rf = RequestFactory()
    request = rf.get("/", REMOTE_ADDR="192.0.2.1", HTTP_X_FORWARDED_FOR="6.6.6.6, 198.51.100.2, 192.0.2.9")
    settings.PERCEPTLAB_TRUSTED_PROXIES = 0
    assert client_ip(request) == "192.0.2.1"
    settings.PERCEPTLAB_TRUSTED_PROXIES = 1
    assert client_ip(request) == "192.0.2.9"
    settings.PERCEPTLAB_TRUSTED_PROXIES = 2
    assert client_ip(request) == "198.51.100.2"
    garbage = rf.get("/", REMOTE_ADDR="192.0.2.1", HTTP_X_FORWARDED_FOR="not-an-ip")
    assert client_ip(garbage) == "192.0.2.1"
    # one IPv6 network (a /48 by default: what a tunnel broker hands out for free) is one client
    assert (
        client_key("2001:db8:1:2::1")
        == client_key("2001:db8:1:ff00::9")
        == client_key("2001:db8:1::")
        == "2001:db8:1::"
    )
    assert client_key("2001:db8:1:2::1") != client_key("2001:db8:2::1")
    settings.PERCEPTLAB_IPV6_CLIENT_PREFIX = 64
    assert (
        client_key("2001:db8:1:2::1") == client_key("2001:db8:1:2:ffff::9") != client_key("2001:db8:1:3::1")
    )


SPOOF = (
    "RequestFactory().get('/', HTTP_X_FORWARDED_PROTO='https', SERVER_NAME='percept.example.org').is_secure()"
)


def test_a_spoofed_x_forwarded_proto_does_not_count_as_https(production_probe):
    """The attack: plain http with `X-Forwarded-Proto: https`, so that Django believes the request is
    secure (secure cookies, no https redirect). Production believes the header only behind a trusted proxy."""
    r = production_probe({}, f"{SPOOF}, settings.SECURE_PROXY_SSL_HEADER")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False None"
    r = production_probe({"PERCEPTLAB_TRUSTED_PROXIES": "1"}, f"{SPOOF}, settings.SECURE_PROXY_SSL_HEADER")
    assert r.returncode == 0, r.stderr
    assert (
        r.stdout.strip() == "True ('HTTP_X_FORWARDED_PROTO', 'https')"
    )  # the proxy (which overwrites it) is trusted


def test_a_bad_trusted_proxies_value_is_a_clear_error(production_probe):
    r = production_probe({"PERCEPTLAB_TRUSTED_PROXIES": "yes"}, "1")
    assert r.returncode != 0 and "PERCEPTLAB_TRUSTED_PROXIES must be a whole number" in r.stderr
