"""Researcher accounts: creating one (manage.py createresearcher, the admin) and the API token a researcher
uses from scripts (rest_framework.authtoken)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from rest_framework.authtoken.models import Token

from core.exceptions import ApplicationError

RESEARCHERS_GROUP = "researchers"


def researchers_group() -> Group:
    return Group.objects.get_or_create(name=RESEARCHERS_GROUP)[0]


def researcher_create(*, username: str, password: str, email: str = ""):
    """An active, non-staff user in the "researchers" group. The password passes Django's validators; a taken
    username (any case) or a malformed email is refused, naming the field."""
    user_model = get_user_model()
    username = (username or "").strip()
    email = (email or "").strip()
    try:
        user_model.username_validator(username)
    except ValidationError as exc:
        raise ApplicationError(f"username: {' '.join(exc.messages)}", {"field": "username"}) from exc
    if not username or len(username) > 150:
        raise ApplicationError("username: 1 to 150 characters", {"field": "username"})
    if user_model.objects.filter(username__iexact=username).exists():
        raise ApplicationError(f"a user named {username!r} already exists", {"field": "username"}, 409)
    if email:
        try:
            validate_email(email)
        except ValidationError as exc:
            raise ApplicationError(f"email: {' '.join(exc.messages)}", {"field": "email"}) from exc
    candidate = user_model(username=username, email=email)
    try:
        validate_password(password, user=candidate)
    except ValidationError as exc:
        raise ApplicationError(f"password: {' '.join(exc.messages)}", {"field": "password"}) from exc
    with transaction.atomic():
        user = user_model.objects.create_user(username=username, email=email, password=password)
        user.groups.add(researchers_group())
    return user


def api_token_create(*, user) -> Token:
    """The researcher's API token, created when there is none."""
    return Token.objects.get_or_create(user=user)[0]


def api_token_regenerate(*, user) -> Token:
    """A new token; the old one stops working at once."""
    with transaction.atomic():
        Token.objects.filter(user=user).delete()
        return Token.objects.create(user=user)


def api_token_revoke(*, user) -> bool:
    """Delete the researcher's token (scripts using it get 401). Whether there was one."""
    deleted, _ = Token.objects.filter(user=user).delete()
    return bool(deleted)
