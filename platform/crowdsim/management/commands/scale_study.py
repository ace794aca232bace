"""Build (or find) a BAPPS-scale simulation study: 187,700 2AFC items in the paper's split and ~500k
judgments from the simulated crowd (crowdsim.scale). A rerun with the same parameters finds the study."""

import time

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from crowdsim.scale import BAPPS_ITEMS, ScaleParams, scale_study_build


def _bar(total: int, desc: str):
    """A tqdm bar (as the distortion engine's) fed with running totals."""
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit=desc[:-1] if desc.endswith("s") else desc, dynamic_ncols=True)

    def update(done: int) -> None:
        bar.update(min(done, total) - bar.n)
        if done >= total:
            bar.close()

    return update


class Command(BaseCommand):
    help = (
        "A BAPPS-scale 2AFC simulation study for benchmarks (make scale-study): --items test items in the "
        "paper's train/val and category split over --distinct engine triplets, answered by a simulated crowd "
        "in bulk (the rows the real answer path writes). Found again, not rebuilt, for the same parameters. "
        "PostgreSQL for the full size."
    )

    def add_arguments(self, parser):
        d = ScaleParams()
        parser.add_argument("--items", type=int, default=BAPPS_ITEMS, help="test items (paper: 187,700)")
        parser.add_argument(
            "--judgments", type=int, default=d.judgments, help="non-practice judgments to store, at most"
        )
        parser.add_argument("--distinct", type=int, default=d.distinct, help="distinct engine triplets")
        parser.add_argument("--workers", type=int, default=d.workers)
        parser.add_argument("--spammers", type=float, default=d.spammers)
        parser.add_argument("--seed", type=int, default=d.seed)
        parser.add_argument("--owner", default="", help="username of the researcher who owns the study")
        parser.add_argument(
            "--id-only",
            action="store_true",
            help="print the study's id only (for scripts: make loadtest-scale)",
        )

    def handle(self, *args, items, judgments, distinct, workers, spammers, seed, owner, id_only, **options):
        if items < 1 or judgments < 0 or distinct < 1 or workers < 1 or not 0 <= spammers <= 1:
            raise CommandError("--items, --distinct and --workers must be positive, --spammers in [0, 1]")
        user = None
        if owner:
            user = get_user_model().objects.filter(username=owner).first()
            if user is None:
                raise CommandError(f"no user {owner!r}")
        params = ScaleParams(
            items=items, judgments=judgments, seed=seed, distinct=distinct, workers=workers, spammers=spammers
        )
        t0 = time.perf_counter()
        study, built = scale_study_build(params, owner=user, progress_factory=None if id_only else _bar)
        if id_only:
            self.stdout.write(str(study.pk))
            return
        what = "built" if built else "found (built earlier with these parameters)"
        self.stdout.write(
            self.style.SUCCESS(
                f"study {study.pk} {what} in {time.perf_counter() - t0:.0f} s: {study.items.count()} items, "
                f"{study.assignments.count()} HITs"
            )
        )
