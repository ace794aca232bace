"""Drive a study with simulated annotators over the real HTTP API (see crowdsim.simulation)."""

from django.core.management.base import BaseCommand, CommandError

from core.exceptions import ApplicationError
from crowdsim.services import simulation_study_prepare
from crowdsim.simulation import run_crowd


class Command(BaseCommand):
    help = (
        "Simulated crowd: workers answer a study's HITs through the annotator API, from a hidden observer "
        "model with noise, lapses, left bias and spammers. The study must be a simulation study "
        "(config simulation=true; --mark sets it on a study without real judgments)."
    )

    def add_arguments(self, parser):
        parser.add_argument("study", help="study id")
        parser.add_argument("--url", default="http://127.0.0.1:8000", help="the running server (make run)")
        parser.add_argument("--workers", type=int, default=50)
        parser.add_argument("--spammers", type=float, default=0.1, help="fraction answering at random")
        parser.add_argument("--lapse", type=float, default=0.05, help="per-trial chance of a random answer")
        parser.add_argument("--left-bias", type=float, default=0.0, help="per-trial chance of pressing left")
        parser.add_argument(
            "--noise", type=float, default=0.15, help="perceptual noise, relative to the distances"
        )
        parser.add_argument(
            "--observer",
            default="l2_lab",
            help="l2_lab, dssim_lab, ... or lpips:<net>:<weights>[:official|ones|last|sparse]",
        )
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--concurrency", type=int, default=4, help="workers answering at the same time")
        parser.add_argument("--replay-rate", type=float, default=0.05, help="share of answers sent twice")
        parser.add_argument("--max-hits", type=int, default=3, help="HITs per worker at most")
        parser.add_argument(
            "--pace", type=float, default=0.0, help="seconds each worker waits before an answer (0.5-1.5x)"
        )
        parser.add_argument("--mark", action="store_true", help="mark the study as a simulation study first")

    def handle(self, *args, study, url, mark, **o):
        try:
            s = simulation_study_prepare(study_id=study, mark=mark)
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        last = [0]

        def progress(r):
            if r.assignments - last[0] >= 5:
                last[0] = r.assignments
                self.stdout.write(f"  {r.assignments} HITs, {r.judgments} judgments")

        r = run_crowd(
            base_url=url,
            study_id=str(s.pk),
            n_workers=o["workers"],
            spammers=o["spammers"],
            lapse=o["lapse"],
            left_bias=o["left_bias"],
            noise=o["noise"],
            observer=o["observer"],
            seed=o["seed"],
            concurrency=o["concurrency"],
            replay_rate=o["replay_rate"],
            max_hits=o["max_hits"],
            progress=progress,
            pace_s=o["pace"],
        )
        self.stdout.write(
            self.style.SUCCESS(
                f"{r.workers} workers ({r.spammers} spammers): {r.assignments} HITs, {r.judgments} judgments "
                f"({r.replays} replayed answers, {r.retries} retried requests) in {r.seconds:.1f} s; "
                f"no work left for {r.no_work}"
            )
        )
