"""Attacks on researcher logins and deployment settings: password guessing against the login page and the
admin (locked out per username and client address, also behind the TLS proxy), weak passwords, short HSTS."""

from __future__ import annotations

import pytest
from django.contrib.auth import password_validation
from django.core.exceptions import ValidationError

pytestmark = pytest.mark.django_db
LOGIN_PAGES = ["/accounts/login/", "/admin/login/"]


@pytest.fixture
def admin_user(django_user_model):
    return django_user_model.objects.create_superuser(
        username="root", email="", password="Correct-horse-42-battery"
    )


def _attempt(client, path, password, *, username="root", **extra):
    return client.post(path, {"username": username, "password": password, "next": "/dashboard/"}, **extra)


def _logged_in(client) -> bool:
    return "_auth_user_id" in client.session


@pytest.mark.parametrize("path", LOGIN_PAGES)
def test_password_guessing_is_locked_out(client, admin_user, settings, path):
    answers = [
        _attempt(client, path, f"guess-{n}").status_code for n in range(settings.AXES_FAILURE_LIMIT + 3)
    ]
    assert answers[: settings.AXES_FAILURE_LIMIT - 1] == [200] * (
        settings.AXES_FAILURE_LIMIT - 1
    )  # the form again
    assert set(answers[settings.AXES_FAILURE_LIMIT - 1 :]) == {429}
    # locked: even the right password is refused now, with a clear page, and nobody is logged in
    r = _attempt(client, path, "Correct-horse-42-battery")
    assert r.status_code == 429 and b"Too many login attempts" in r.content and not _logged_in(client)
    # the lock is for this username from this address: the owner logs in from elsewhere
    other = client.__class__(REMOTE_ADDR="198.51.100.7")
    assert _attempt(other, path, "Correct-horse-42-battery").status_code == 302 and _logged_in(other)


def test_rotating_ipv6_addresses_within_one_network_does_not_escape_the_lockout(client, admin_user, settings):
    """The attack: one fresh address of one's own /64 (or /56, or a tunnel broker's /48) per password
    guess."""
    answers = [
        _attempt(
            client, "/accounts/login/", f"guess-{n}", REMOTE_ADDR=f"2001:db8:0:{n:x}00::{n + 1:x}"
        ).status_code
        for n in range(settings.AXES_FAILURE_LIMIT + 10)
    ]
    assert set(answers[settings.AXES_FAILURE_LIMIT - 1 :]) == {429}, answers
    r = _attempt(client, "/accounts/login/", "Correct-horse-42-battery", REMOTE_ADDR="2001:db8:0:ffff::ff")
    assert r.status_code == 429 and not _logged_in(client)


def test_rotating_forged_forwarded_for_entries_does_not_escape_the_lockout(client, admin_user, settings):
    """Behind one trusted proxy the address is the entry the proxy appended; the ones the attacker sends
    (further left) change nothing. Without a trusted proxy X-Forwarded-For is ignored altogether."""
    settings.PERCEPTLAB_TRUSTED_PROXIES = 1
    for n in range(settings.AXES_FAILURE_LIMIT + 2):
        r = _attempt(
            client,
            "/accounts/login/",
            f"guess-{n}",
            REMOTE_ADDR="10.0.0.2",
            HTTP_X_FORWARDED_FOR=f"192.0.2.{n}, 203.0.113.9",
        )
    assert r.status_code == 429
    assert (
        _attempt(
            client,
            "/accounts/login/",
            "Correct-horse-42-battery",
            REMOTE_ADDR="10.0.0.2",
            HTTP_X_FORWARDED_FOR="192.0.2.200, 203.0.113.9",
        ).status_code
        == 429
    )
    # another real client behind the same proxy is not locked out by the attacker
    assert (
        _attempt(
            client,
            "/accounts/login/",
            "Correct-horse-42-battery",
            REMOTE_ADDR="10.0.0.2",
            HTTP_X_FORWARDED_FOR="203.0.113.10",
        ).status_code
        == 302
    )

    settings.PERCEPTLAB_TRUSTED_PROXIES = 0
    fresh = client.__class__()
    for n in range(settings.AXES_FAILURE_LIMIT + 1):
        r = _attempt(
            fresh, "/accounts/login/", f"guess-{n}", username="nobody", HTTP_X_FORWARDED_FOR=f"192.0.2.{n}"
        )
    assert r.status_code == 429  # all counted against REMOTE_ADDR


def test_garbage_in_forwarded_for_falls_back_to_the_peer_address(rf, settings):
    from core.net import client_ip as client_address

    settings.PERCEPTLAB_TRUSTED_PROXIES = 1
    assert (
        client_address(rf.get("/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="1.2.3.4, <script>"))
        == "10.0.0.2"
    )
    assert (
        client_address(rf.get("/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="1.2.3.4, 203.0.113.9"))
        == "203.0.113.9"
    )
    assert client_address(rf.get("/", REMOTE_ADDR="10.0.0.2")) == "10.0.0.2"
    settings.PERCEPTLAB_TRUSTED_PROXIES = 2
    assert (
        client_address(rf.get("/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="6.6.6.6, 1.2.3.4, 10.0.0.1"))
        == "1.2.3.4"
    )


@pytest.mark.parametrize("weak", ["password123", "123456789012345", "short-pw1", "rootroot1"])
def test_a_weak_password_is_refused(client, admin_user, weak):
    with pytest.raises(ValidationError):
        password_validation.validate_password(weak, admin_user)
    client.force_login(admin_user)
    r = client.post(
        "/accounts/password_change/",
        {"old_password": "Correct-horse-42-battery", "new_password1": weak, "new_password2": weak},
    )
    assert r.status_code == 200 and r.context["form"].errors.get("new_password2")
    admin_user.refresh_from_db()
    assert admin_user.check_password("Correct-horse-42-battery")


def test_the_demo_admin_password_passes_the_validators(settings, tmp_path, django_user_model):
    from studies.management.commands.demo_setup import admin_ensure

    settings.DATA_DIR = tmp_path
    for _ in range(20):  # a fresh random password each time
        (tmp_path / "admin_password").unlink(missing_ok=True)
        username, password = admin_ensure()
        user = django_user_model.objects.get(username=username)
        password_validation.validate_password(password, user)
        assert user.check_password(password)


def test_production_hsts_lasts_at_least_180_days_and_cannot_be_shortened(production_probe):
    r = production_probe({}, "settings.SECURE_HSTS_SECONDS")
    assert r.returncode == 0, r.stderr
    assert int(r.stdout.strip()) >= 180 * 24 * 3600
    r = production_probe({"SECURE_HSTS_SECONDS": str(200 * 24 * 3600)}, "settings.SECURE_HSTS_SECONDS")
    assert r.returncode == 0 and int(r.stdout.strip()) == 200 * 24 * 3600
    r = production_probe({"SECURE_HSTS_SECONDS": "3600"}, "1")
    assert r.returncode != 0 and "SECURE_HSTS_SECONDS must be at least" in r.stderr
