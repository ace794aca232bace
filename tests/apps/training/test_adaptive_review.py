"""Reviewer rev-adaptive (issue 20): the sampler a model version is labelled with on the learning curve.
Failed against main when written; see the review report for the suggested fix."""

import pytest

from training import services
from training.models import ModelVersion

pytestmark = pytest.mark.django_db


def test_a_study_without_a_pool_trains_models_labelled_uniform_whatever_the_sampler_setting(
    make_study, crowd
):
    """training.services labels each lin model version with the configured sampler (train_info["sampler"],
    the dashboard's learning curve per sampler). The config accepts a sampler with pool_factor 1, where no
    pool exists and every item is served uniformly (judgments.pool never runs; exports say uniform@1), yet
    the curve is drawn as a "disagreement" curve. Suggested: label by what drew the train items judged (the
    majority, or the mix, of their sampler_version via judgments.pool.item_draw), so a pool's rounds before
    the first rescoring (drawn uniform@1) are not credited to the sampler either."""
    study = make_study(
        n_test=16,
        n_sentinels=2,
        n_practice=0,
        val_fraction=0.25,
        config={
            "hit_size": 4,
            "training": {
                "every": None,
                "backbones": [{"net": "alex", "weights": "random"}],
                "baselines": ["l2_lab"],
                "official_lpips": False,
                "n_boot": 20,
                "min_steps": 20,
            },
            "sampling": {"sampler": "disagreement", "pool_factor": 1, "uniform_share": 0.2},
        },
    )
    crowd(study, 8, lambda t, i: i.expected or "p0", prefix="w")
    services.study_retrain(study=study)
    version = ModelVersion.objects.filter(study=study, variant="lin").latest("finished_at")
    assert version.train_info["sampler"] == "uniform"
