"""Create the admin login and the demo study (built by the distortion engine). Safe to re-run."""

import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand

from studies.services import demo_study_ensure


def admin_password_path():
    return settings.DATA_DIR / "admin_password"


def admin_ensure() -> tuple[str, str]:
    username = settings.PERCEPTLAB["DEMO_ADMIN_USERNAME"]
    path = admin_password_path()
    user_model = get_user_model()
    user = user_model.objects.filter(username=username).first()
    if user is not None and path.exists():
        return username, path.read_text().strip()
    password = _strong_password(user_model(username=username))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(password)
    path.chmod(0o600)
    if user is None:
        user_model.objects.create_superuser(username=username, email="", password=password)
    else:
        user.set_password(password)
        user.save(update_fields=["password"])
    return username, password


def _strong_password(user) -> str:
    """A random password that AUTH_PASSWORD_VALIDATORS accept (16 URL-safe characters nearly always do)."""
    for _ in range(100):
        password = secrets.token_urlsafe(12)
        try:
            validate_password(password, user)
        except ValidationError:
            continue
        return password
    raise RuntimeError("could not generate a password that AUTH_PASSWORD_VALIDATORS accept")


class Command(BaseCommand):
    help = "Create the admin user and the demo study (reuses what exists)."

    def add_arguments(self, parser):
        parser.add_argument("--items", type=int, default=None, help="number of test triplets (default 200)")
        parser.add_argument(
            "--skip-cnn", action="store_true", help="traditional distortions only (no CNN pool training)"
        )

    def handle(self, *args, items=None, skip_cnn=False, **options):
        username, _ = admin_ensure()
        owner = get_user_model().objects.get(username=username)
        study, created = demo_study_ensure(owner=owner, n_items=items, with_cnn=False if skip_cnn else None)
        verb = "built" if created else "reused"
        self.stdout.write(f"demo study {verb}: {study.name} ({study.items.count()} items, id {study.pk})")
