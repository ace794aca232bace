"""Re-scoring a candidate pool after a retrain (training.rescoring): a real retrain on a tiny study with a
random AlexNet trunk (offline), then the sampler's scores on the inactive candidates."""

import numpy as np
import pytest

from judgments.assignments import assignment_start
from studies.models import Item, Study
from training import services
from training.models import Evaluation
from training.rescoring import candidates_rescore

pytestmark = pytest.mark.django_db
RANDOM_ALEX = {
    "every": None,
    "backbones": [{"net": "alex", "weights": "random"}],
    "baselines": ["l2_lab", "psnr"],
    "official_lpips": False,
    "n_boot": 50,
    "min_steps": 50,
}


def _pool_study(make_study, sampler: str, budget: int = 12):
    study = make_study(
        n_test=24,
        n_sentinels=2,
        n_practice=0,
        val_fraction=0.25,  # 6 val items, 18 train candidates
        config={
            "hit_size": 3,
            "training": RANDOM_ALEX,
            "sampling": {"sampler": sampler, "pool_factor": 1, "uniform_share": 0.2},
        },
    )
    Item.objects.filter(study=study, role="test", split="train").update(active=False)
    Study.objects.filter(pk=study.pk).update(train_budget=budget)
    study.refresh_from_db()
    return study


def _candidates(study):
    return Item.objects.filter(study=study, role="test", split="train", active=False).order_by("index")


def test_a_retrain_then_a_rescoring_scores_every_candidate_and_the_next_release_uses_them(
    make_study, crowd, settings
):
    study = _pool_study(make_study, "disagreement")
    rng = np.random.default_rng(0)
    crowd(study, 6, lambda t, i: i.expected or ("p0", "p1")[int(rng.random() < 0.4)], prefix="w")
    released = Item.objects.filter(study=study, role="test", split="train", active=True)
    assert released.count() == 6 and set(released.values_list("sampler_version", flat=True)) == {"uniform@1"}
    services.study_retrain(study=study)
    # held-out scores and the human ceiling read the val split only
    rows = Evaluation.objects.filter(study=study, category="all")
    judged_val = Item.objects.filter(study=study, split="val", role="test", n_judgments__gt=0).count()
    assert set(rows.values_list("split", flat=True)) == {"val"}
    assert set(rows.values_list("n_items", flat=True)) == {judged_val}

    summary = candidates_rescore(study=study)
    candidates = list(_candidates(study))
    assert summary == {"study": str(study.pk), "status": "done", "scored": 12, "committee": 3}
    scores = [c.score for c in candidates]
    assert all(s is not None and 0 <= s <= 1 for s in scores) and len(set(scores)) > 1
    assert (settings.MEDIA_ROOT / "features" / str(study.pk) / "baselines.npz").is_file()
    # incremental: a second rescoring reuses the cached statistics and distances, with the same result
    assert candidates_rescore(study=study)["scored"] == 12
    assert [c.score for c in _candidates(study)] == scores
    # the next releases draw from the scores, and say so; never past the budget
    for w in range(6):
        assignment_start(study=study, platform="anonymous", worker_id=f"late{w}")
    fresh = Item.objects.filter(study=study, role="test", active=True, sampler_version="disagreement@1")
    assert fresh.count() == 6 and released.count() == 12
    assert all(0 < p <= 1 for p in fresh.values_list("propensity", flat=True))


def test_uncertainty_uses_the_heads_only_and_uniform_or_no_pool_skips(make_study, crowd):
    study = _pool_study(make_study, "uncertainty")
    crowd(study, 6, lambda t, i: i.expected or "p0", prefix="w")
    assert candidates_rescore(study=study)["status"] == "no committee yet"  # no trained heads yet
    services.study_retrain(study=study)
    summary = candidates_rescore(study=study)
    assert summary["committee"] == 1 and summary["scored"] == _candidates(study).count()
    uniform = _pool_study(make_study, "uniform")
    assert candidates_rescore(study=uniform)["status"] == "skipped"
    plain = make_study(n_test=4, config={"sampling": {"sampler": "disagreement"}})
    assert candidates_rescore(study=plain)["status"] == "skipped"


def test_info_gain_scores_candidates_of_references_with_three_versions(make_study):
    study = _pool_study(make_study, "info_gain")
    trains = list(_candidates(study))
    images = [t.p0_image for t in trains[:3]]
    for n, item in enumerate(trains):  # references of 3 distorted versions, every pair of them asked
        a, b = [(0, 1), (0, 2), (1, 2)][n % 3]
        Item.objects.filter(pk=item.pk).update(
            ref_image=trains[n - n % 3].ref_image, p0_image=images[a], p1_image=images[b]
        )
    summary = candidates_rescore(study=study)
    scores = list(_candidates(study).values_list("score", flat=True))
    assert summary["scored"] == len(trains) and all(s >= 0 for s in scores) and max(scores) > 0


def test_a_finished_retrain_of_a_pool_study_enqueues_the_rescoring(
    make_study, captured_tasks, monkeypatch, django_capture_on_commit_callbacks
):
    from training import tasks

    study = _pool_study(make_study, "disagreement")
    plain = make_study(n_test=4)
    monkeypatch.setattr(services, "study_retrain", lambda study, progress: {"status": "done"})
    with django_capture_on_commit_callbacks(execute=True):
        tasks.study_retrain.run(str(study.pk))
        tasks.study_retrain.run(str(plain.pk))
    assert captured_tasks == [("training.candidates_rescore", (str(study.pk),), {})]
