"""Issue 18 attack review: researcher_create (manage.py createresearcher) promises to refuse a taken username
"(any case)", but it checks the name as typed while Django's create_user stores it NFKC-normalised. A
full-width look-alike of an existing researcher's name becomes a second account with that name in capitals
(carol and CAROL), and one that normalises to exactly a taken name crashes with an IntegrityError (a traceback
from the command) instead of the command's "already exists" error."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from accounts.services import researcher_create
from core.exceptions import ApplicationError

pytestmark = pytest.mark.django_db

PASSWORD = "a-Long-pass-9876"


def test_it_refuses_a_full_width_look_alike_of_a_taken_username(researcher_carol):
    with pytest.raises(ApplicationError, match="already exists"):
        researcher_create(username="ＣＡＲＯＬ", password=PASSWORD)  # NFKC: "CAROL"
    names = sorted(get_user_model().objects.values_list("username", flat=True))
    assert names == ["carol"]


def test_it_answers_a_name_that_normalises_to_a_taken_one_with_a_command_error(researcher_carol, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    with pytest.raises(CommandError, match="already exists"):
        call_command("createresearcher", "ｃarol", "--password-stdin")  # NFKC: "carol"
