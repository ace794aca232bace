"""Create the admin login and the demo studies. Safe to re-run: what exists is reused.

Built here (seconds): the 2AFC demo a person answers. Left to the background, so the first page waits on
none of them: the JND demo's and the simulated crowd's stimuli (queued for the worker) and the CNN pool
(rundev's `cnnpool` process, manage.py demo_cnn_pool), whose items then join the 2AFC demo
(docs/first-run.md)."""

import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand

from config.celery_app import ensure_broker_folders
from studies.services import demo_cnn_pool_pending, demo_extra_studies_ensure, demo_study_ensure


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
    help = "Create the admin user and the demo studies (reuses what exists); queue the background builds."

    def add_arguments(self, parser):
        parser.add_argument("--items", type=int, default=None, help="number of test triplets (default 200)")
        parser.add_argument(
            "--skip-cnn", action="store_true", help="traditional distortions only (no CNN pool training)"
        )
        parser.add_argument(
            "--only-2afc", action="store_true", help="the 2AFC demo only (no JND or simulated-crowd study)"
        )

    def handle(self, *args, items=None, skip_cnn=False, only_2afc=False, **options):
        ensure_broker_folders()
        username, _ = admin_ensure()
        owner = get_user_model().objects.get(username=username)
        study, created = demo_study_ensure(owner=owner, n_items=items, with_cnn=False if skip_cnn else None)
        verb = "built" if created else "reused"
        self.stdout.write(f"demo study {verb}: {study.name} ({study.items.count()} items, id {study.pk})")
        if not only_2afc:
            for other, made in demo_extra_studies_ensure(owner=owner).values():
                state = "created" if made else "reused"
                self.stdout.write(
                    f"demo study {state}: {other.name} ({other.get_status_display()}, id {other.pk})"
                )
        if not skip_cnn and settings.PERCEPTLAB["DEMO_CNN"]:
            if demo_cnn_pool_pending():
                self.stdout.write("CNN pool pending: rundev trains it in the background (progress on /)")
            else:
                self.stdout.write("CNN pool ready (reused)")
