"""The demo's simulated crowd (started by rundev): answers the simulated 2AFC study over the real HTTP API,
paced, until it is full; then retrains and exports it. Exits at once when an earlier run finished it."""

import signal
import time
import urllib.request

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from core.exceptions import ApplicationError
from crowdsim.services import (
    demo_crowd_finish,
    demo_crowd_finished,
    demo_crowd_wait_built,
    simulation_study_prepare,
)
from crowdsim.simulation import run_crowd
from studies.services import demo_studies


def _wait_for_web(url: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"{url}/livez", timeout=5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise CommandError(f"no web server answered at {url} within {timeout_s:.0f} s") from None
            time.sleep(0.5)


def _exit_on_term(signum, frame):
    raise SystemExit(0)


class Command(BaseCommand):
    help = (
        "The demo's simulated crowd: answer the simulated 2AFC study over HTTP (paced) until it is full, "
        "then retrain and export it. Does nothing when an earlier run finished it."
    )

    def add_arguments(self, parser):
        parser.add_argument("--url", default="http://127.0.0.1:8000", help="the running server (make run)")

    def handle(self, *args, url, **options):
        signal.signal(signal.SIGTERM, _exit_on_term)
        try:
            self._run(url)
        except KeyboardInterrupt:
            self.stdout.write("simulated crowd: interrupted; the next run carries on where it stopped")

    def _run(self, url: str) -> None:
        study = demo_studies().get("crowd")
        if study is None:
            self.stdout.write("simulated crowd: no simulated demo study (manage.py demo_setup creates it)")
            return
        if demo_crowd_finished(study=study):
            self.stdout.write("simulated crowd: finished in an earlier run (its study is full and exported)")
            return
        crowd = settings.PERCEPTLAB["DEMO_CROWD"]
        try:
            study = demo_crowd_wait_built(study_id=study.pk)
            simulation_study_prepare(study_id=str(study.pk))
        except ApplicationError as exc:
            raise CommandError(f"simulated crowd: {exc.message}") from exc
        _wait_for_web(url)
        self.stdout.write(f"simulated crowd: answering {study.name} at {url} (observer {crowd['observer']})")
        result = run_crowd(
            base_url=url,
            study_id=str(study.pk),
            n_workers=crowd["workers"],
            concurrency=crowd["concurrency"],
            pace_s=crowd["pace_s"],
            observer=crowd["observer"],
            seed=2020,
        )
        owner = get_user_model().objects.filter(username=settings.PERCEPTLAB["DEMO_ADMIN_USERNAME"]).first()
        export = demo_crowd_finish(study=study, owner=owner)
        self.stdout.write(
            f"simulated crowd: done, {result.assignments} HITs, {result.judgments} judgments in "
            f"{result.seconds:.0f} s; export v{export.version} queued"
        )
