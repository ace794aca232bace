"""manage.py createresearcher USERNAME [--email E] [--password-stdin]: an active, non-staff researcher in the
"researchers" group. Without --password-stdin the password is asked for twice (not echoed)."""

from __future__ import annotations

import getpass
import sys

from django.core.management.base import BaseCommand, CommandError

from accounts.services import researcher_create
from core.exceptions import ApplicationError


class Command(BaseCommand):
    help = "Create a researcher account (active, not staff, in the 'researchers' group)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")
        parser.add_argument("--email", default="")
        parser.add_argument(
            "--password-stdin", action="store_true", help="read the password from the first line of stdin"
        )

    def handle(self, *args, username: str, email: str, password_stdin: bool, **options) -> None:
        if password_stdin:
            password = sys.stdin.readline().rstrip("\r\n")
        else:
            password = getpass.getpass("Password: ")
            if getpass.getpass("Password (again): ") != password:
                raise CommandError("the two passwords differ")
        if not password:
            raise CommandError("a password is required")
        try:
            user = researcher_create(username=username, email=email, password=password)
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(f"researcher {user.get_username()} created; they log in at /accounts/login/")
