"""Train the demo's CNN pool in the background (rundev's `cnnpool` process), then add its items to the 2AFC
demo; progress in BackgroundJob "cnn_pool" (home page, dashboard). Exits at once when the pool is done."""

import signal

from django.conf import settings
from django.core.management.base import BaseCommand

from studies.services import demo_cnn_pool_pending, demo_cnn_pool_run


def _exit_on_term(signum, frame):
    raise SystemExit(0)


class Command(BaseCommand):
    help = "Train the demo's CNN pool (resuming from checkpoints) and add its items to the 2AFC demo."

    def handle(self, *args, **options):
        if not settings.PERCEPTLAB["DEMO_CNN"] or not demo_cnn_pool_pending(create=False):
            self.stdout.write("CNN pool: nothing to train")
            return
        signal.signal(signal.SIGTERM, _exit_on_term)
        pool = settings.PERCEPTLAB["DEMO_CNN_POOL"]
        self.stdout.write(f"CNN pool: training {pool['n_models']} models in the background")
        try:
            # one process (jobs=1): an interrupt stops it at once; torch's threads are set by rundev
            result = demo_cnn_pool_run(n_models=pool["n_models"], budget=pool["budget"], jobs=1)
        except KeyboardInterrupt:
            self.stdout.write("CNN pool: interrupted; the next run resumes it from its checkpoints")
            return
        self.stdout.write(
            f"CNN pool: {result['models']} models ready; {result.get('demo_items_added', 0)} CNN items "
            "joined the 2AFC demo"
        )
