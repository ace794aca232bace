"""manage.py createresearcher: an active, non-staff user in the "researchers" group, with Django's password
validators, a clear error on duplicates; admins see and make researchers in the admin."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

pytestmark = pytest.mark.django_db
GOOD = "correct horse battery staple"


def _create(*args, password=GOOD, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(password + "\n"))
    out = io.StringIO()
    call_command("createresearcher", *args, "--password-stdin", stdout=out)
    return out.getvalue()


def test_it_creates_an_active_non_staff_researcher_who_can_log_in(monkeypatch, client):
    out = _create("erin", "--email", "erin@lab.example", monkeypatch=monkeypatch)
    user = get_user_model().objects.get(username="erin")
    assert "erin" in out and user.is_active and not user.is_staff and not user.is_superuser
    assert user.email == "erin@lab.example"
    assert list(user.groups.values_list("name", flat=True)) == ["researchers"]
    r = client.post("/accounts/login/", {"username": "erin", "password": GOOD})
    assert r.status_code == 302 and r["Location"] == "/dashboard/"
    assert client.get("/dashboard/").status_code == 200
    assert client.get("/admin/").status_code == 302  # not staff


def test_it_refuses_a_duplicate_whatever_the_case(monkeypatch):
    _create("erin", monkeypatch=monkeypatch)
    with pytest.raises(CommandError, match="already exists"):
        _create("Erin", monkeypatch=monkeypatch)
    assert get_user_model().objects.count() == 1


@pytest.mark.parametrize("password", ["short", "password1234", "12345678901234"])
def test_it_applies_djangos_password_validators(monkeypatch, password):
    with pytest.raises(CommandError, match="password"):
        _create("erin", password=password, monkeypatch=monkeypatch)
    assert not get_user_model().objects.exists()


@pytest.mark.parametrize(
    ("args", "match"), [(["bad name!"], "username"), (["erin", "--email", "nope"], "email")]
)
def test_it_refuses_bad_usernames_and_emails(monkeypatch, args, match):
    with pytest.raises(CommandError, match=match):
        _create(*args, monkeypatch=monkeypatch)
    assert not get_user_model().objects.exists()


def test_it_prompts_for_the_password_twice(monkeypatch):
    answers = iter([GOOD, GOOD])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    call_command("createresearcher", "frank", stdout=io.StringIO())
    assert get_user_model().objects.get(username="frank").check_password(GOOD)
    answers = iter([GOOD, GOOD + "x"])
    with pytest.raises(CommandError, match="differ"):
        call_command("createresearcher", "grace", stdout=io.StringIO())


def test_the_admin_shows_and_makes_researchers(monkeypatch, client, django_user_model, researcher_carol):
    _create("erin", monkeypatch=monkeypatch)
    admin = django_user_model.objects.create_superuser(username="root", password="x" * 16)
    client.force_login(admin)
    html = client.get("/admin/auth/user/").content.decode()
    assert "researcher" in html and "erin" in html
    assert client.get("/admin/auth/user/add/").status_code == 200
    r = client.post(
        "/admin/auth/user/",
        {"action": "make_researchers", "_selected_action": [researcher_carol.pk]},
    )
    assert r.status_code == 302
    assert researcher_carol.groups.filter(name="researchers").exists()
    assert "researchers" in client.get(f"/admin/auth/user/{researcher_carol.pk}/change/").content.decode()
