"""End to end on real Postgres, Redis, a Celery worker and an HTTP server: a simulated crowd answers a
study through the annotator API, QC excludes its spammers, retraining fires on its own as judgments
arrive, and the trained head agrees with the hidden observer better than the untrained baselines."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from worker_process import celery_worker, child_env, wait_for  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.slow]
OBSERVER = "lpips:alex:random:last"  # structure the unweighted / untrained heads do not have


@pytest.mark.django_db(transaction=True)
def test_a_simulated_crowd_trains_the_metric_live(settings, redis_url, postgres, live_server, tmp_path):
    from crowdsim.simulation import run_crowd
    from judgments.models import Assignment
    from judgments.workers import worker_hash
    from studies.services import study_build_stimuli, study_create
    from training.models import Evaluation, ModelVersion, TrainingState
    from training.services import accepted_judgments, training_request

    study = study_create(
        name="e2e",
        kind="2afc",
        build_config={
            "seed": 11,
            "n_items": 240,
            "source": {"type": "skimage"},
            "splits": {"train": 0.5, "val": 0.5},
            "sentinels": {"n": 20},
            "practice": {"n": 2},
        },
        config={
            "hit_size": 40,
            "sentinel_rate": 0.3,
            "judgments_per_item": {"train": 2, "val": 3},
            "exclusion": {"min_sentinel_accuracy": 0.8},
            "simulation": True,
            "training": {
                "every": 250,
                "backbones": [{"net": "alex", "weights": "random"}],
                "baselines": ["l2_lab"],
                "official_lpips": False,
                "n_boot": 200,
            },
        },
    )
    study_build_stimuli(study=study, jobs=1)
    with celery_worker(child_env(settings, redis_url), log_path=tmp_path / "worker.log"):
        result = run_crowd(
            base_url=live_server.url,
            study_id=str(study.pk),
            n_workers=40,
            spammers=0.15,
            lapse=0.02,
            noise=0.15,
            observer=OBSERVER,
            seed=3,
            concurrency=4,
            replay_rate=0.05,
            max_hits=2,
        )
        # retraining fired on its own while the crowd worked
        try:
            wait_for(
                lambda: TrainingState.objects.filter(study=study, runs__gte=1, running_since=None).exists(),
                timeout=300,
            )
        except TimeoutError:
            pytest.fail("no retrain ran:\n" + (tmp_path / "worker.log").read_text()[-4000:])
        auto_runs = TrainingState.objects.get(study=study).runs
        # then one on the final data
        final = accepted_judgments(study_id=study.pk)
        wait_for(lambda: TrainingState.objects.get(study=study).running_since is None, timeout=300)
        training_request(study=study, force=True)
        wait_for(
            lambda: (
                TrainingState.objects.get(study=study).last_judgments == final
                and TrainingState.objects.get(study=study).running_since is None
            ),
            timeout=300,
        )
    log = (tmp_path / "worker.log").read_text()
    assert "training.study_retrain" in log and auto_runs >= 1
    assert result.spammers >= 2 and result.replays > 0
    # QC: every spammer who submitted is excluded; an honest worker at most rarely (a short HIT at the end of
    # the study holds few sentinels, so one lapse there can cost it)
    spam_hashes = {worker_hash(platform="simulated", external_id=w) for w in result.spammer_ids}
    excluded = set(
        Assignment.objects.filter(study=study, excluded=True).values_list("worker__external_hash", flat=True)
    )
    assert spam_hashes and spam_hashes <= excluded
    assert len(excluded - spam_hashes) <= 1, Assignment.objects.filter(
        study=study, excluded=True
    ).values_list("qc", flat=True)
    # the model learned the observer: trained vs the same heads untrained, and vs the unweighted trunk
    run = Evaluation.objects.filter(study=study).latest("created_at").run
    score = {
        e.metric: e.score
        for e in Evaluation.objects.filter(study=study, run=run, category="all", measure="2afc")
    }
    trained = score["trained alex-random lin"]
    assert trained >= score["alex-random untrained (init heads)"] + 0.2
    assert trained >= score["alex-random unweighted"]
    assert trained >= score["l2_lab"]
    assert ModelVersion.objects.filter(study=study, status="ready").count() >= 2
    print(f"\ncrowd: {result}\nscores (val, all): {score}")
