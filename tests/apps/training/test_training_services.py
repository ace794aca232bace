"""Continuous training: debounced triggers, one job per study, the feature cache, crash safety, results."""

import hashlib

import numpy as np
import pytest
import torch

from judgments.assignments import assignment_start
from metric.lpips import LPIPS
from training import services
from training.features import FeatureCache
from training.models import Evaluation, ModelVersion, TrainingState

pytestmark = pytest.mark.django_db
RANDOM_ALEX = {
    "every": 10,
    "backbones": [{"net": "alex", "weights": "random"}],
    "baselines": ["l2_lab", "psnr"],
    "official_lpips": False,
    "n_boot": 50,
    "min_steps": 50,
}


def judged(crowd, study, n, policy=None):
    """n workers (w0, w1, ...) answer: 2AFC p1 about 40 % of the time unless a policy is given."""
    rng = np.random.default_rng(0)
    crowd(study, n, policy or (lambda t, i: i.expected or ("p0", "p1")[int(rng.random() < 0.4)]), prefix="w")


def test_the_nth_judgment_enqueues_exactly_one_retrain(
    make_study, answer_trials, captured_tasks, django_capture_on_commit_callbacks
):
    study = make_study(
        n_test=30,
        n_sentinels=0,
        n_practice=0,
        config={"hit_size": 4, "training": {**RANDOM_ALEX, "every": 10}},
    )
    with django_capture_on_commit_callbacks(execute=True):
        a = assignment_start(study=study, platform="anonymous", worker_id="w").assignment
        answer_trials(a, lambda t, i: "p0")
        b = assignment_start(study=study, platform="anonymous", worker_id="v").assignment
        answer_trials(b, lambda t, i: "p0")
        c = assignment_start(study=study, platform="anonymous", worker_id="u").assignment
        answer_trials(c, lambda t, i: "p0", limit=1)
    assert services.accepted_judgments(study_id=study.pk) == 9
    assert captured_tasks == []
    with django_capture_on_commit_callbacks(execute=True):
        answer_trials(c, lambda t, i: "p0", limit=1)  # the 10th
        answer_trials(c, lambda t, i: "p0")  # 11th, 12th: already queued
    assert captured_tasks == [("training.study_retrain", (str(study.pk),), {})]
    assert TrainingState.objects.get(study=study).queued


def test_a_retrain_trains_saves_heads_and_evaluates(crowd, make_study, answer_trials, settings):
    study = make_study(
        n_test=24,
        n_sentinels=2,
        n_practice=0,
        categories=("traditional", "cnn"),
        config={"hit_size": 24, "training": RANDOM_ALEX},
    )
    judged(crowd, study, 5)
    summary = services.study_retrain(study=study)
    assert summary["status"] == "done" and summary["models"] == ["alex-random-lin v1"]
    version = ModelVersion.objects.get(study=study)
    assert version.status == "ready" and version.n_train_items == 12
    heads = settings.MEDIA_ROOT / version.heads_path
    model = LPIPS(net="alex", backbone_weights="random", head_weights=heads)  # the lpips file format loads
    assert model.head_source.startswith("file:")
    metrics = set(Evaluation.objects.filter(study=study).values_list("metric", flat=True))
    assert metrics == {
        "human",
        "l2_lab",
        "psnr",
        "alex-random unweighted",
        "alex-random untrained (init heads)",
        "trained alex-random lin",
    }
    kinds = dict(Evaluation.objects.filter(study=study).values_list("metric", "kind"))
    assert kinds == {
        "human": "human",
        "l2_lab": "baseline",
        "psnr": "baseline",
        "alex-random unweighted": "unweighted",
        "alex-random untrained (init heads)": "untrained",
        "trained alex-random lin": "trained",
    }
    linked = set(Evaluation.objects.filter(study=study, model_version=version).values_list("kind", flat=True))
    assert linked == {"trained"}  # only the trained heads' rows point at the model version
    cats = set(Evaluation.objects.filter(study=study, metric="l2_lab").values_list("category", flat=True))
    assert cats == {"traditional", "cnn", "all"}
    row = Evaluation.objects.get(study=study, metric="l2_lab", category="all")
    assert 0 <= row.score <= 1 and row.ci_low <= row.score <= row.ci_high and row.n_items == 12
    state = TrainingState.objects.get(study=study)
    assert state.last_judgments == summary["n_judgments"] > 0 and state.running_since is None


def test_the_feature_cache_computes_each_item_once_and_follows_the_backbone(make_study, settings):
    study = make_study(n_test=6, n_sentinels=0, n_practice=0)
    items = list(study.items.values("id", "ref_image", "p0_image", "p1_image"))
    model = services.backbone_model({"net": "alex", "weights": "random"})
    cache = FeatureCache(study.pk, model)
    s0, s1 = cache.stats(items[:4], kind="2afc")
    assert cache.computed == 4 and s0.shape == (4, 1152)
    again = FeatureCache(study.pk, model)
    t0, _ = again.stats(items, kind="2afc")
    assert again.computed == 2 and np.array_equal(t0[:4], s0)
    # the cached statistics give the model's own distance for any head: d = stats @ w
    from metric.data import load_patch, to_tensor

    w = torch.rand(1152)
    model.heads.set_flat_weights(w)
    ref, p0 = (
        to_tensor(load_patch(settings.MEDIA_ROOT / items[0][f], 64)[None]) for f in ("ref_image", "p0_image")
    )
    with torch.no_grad():
        direct = float(model.eval()(ref, p0).flatten()[0])
    assert float(s0[0] @ w.numpy()) == pytest.approx(direct, rel=1e-4)
    other = FeatureCache(study.pk, services.backbone_model({"net": "alex", "weights": "random", "seed": 1}))
    assert other.name != cache.name
    other.stats(items[:1], kind="2afc")
    assert not cache.part_names() and other.part_names()  # the old backbone's cache is invalidated


def test_a_crashed_job_never_replaces_the_current_model(crowd, make_study, answer_trials, monkeypatch):
    study = make_study(
        n_test=16, n_sentinels=0, n_practice=0, config={"hit_size": 16, "training": RANDOM_ALEX}
    )
    judged(crowd, study, 5)
    services.study_retrain(study=study)
    good = services.current_model(study=study)
    evaluations = Evaluation.objects.count()

    def boom(*a, **k):
        raise RuntimeError("killed mid-training")

    monkeypatch.setattr(services, "train_lin_fast", boom)
    with pytest.raises(RuntimeError):
        services.study_retrain(study=study)
    assert services.current_model(study=study) == good
    assert ModelVersion.objects.get(version=2).status == "failed"
    assert Evaluation.objects.count() == evaluations  # no partial evaluation either
    state = TrainingState.objects.get(study=study)
    assert state.running_since is None and "killed" in state.last_error


def test_only_one_job_per_study_runs_at_a_time(crowd, make_study, answer_trials):
    from django.utils import timezone

    study = make_study(n_test=8, n_sentinels=0, n_practice=0, config={"hit_size": 8, "training": RANDOM_ALEX})
    judged(crowd, study, 5)
    TrainingState.objects.create(study=study, running_since=timezone.now())
    assert services.study_retrain(study=study)["status"] == "busy"
    assert TrainingState.objects.get(study=study).queued  # it runs again once the other finishes
    assert not ModelVersion.objects.exists()


def test_jnd_studies_are_evaluated_with_map(crowd, make_study, answer_trials):
    study = make_study(
        kind="jnd",
        n_test=12,
        n_sentinels=0,
        n_practice=0,
        val_fraction=1.0,
        config={"hit_size": 12, "training": RANDOM_ALEX},
    )
    judged(crowd, study, 3, policy=lambda t, i: "same" if i.index % 3 else "different")
    services.study_retrain(study=study)
    measures = set(Evaluation.objects.filter(study=study).values_list("measure", flat=True))
    assert measures == {"jnd_map"}
    assert not ModelVersion.objects.exists()


def test_tune_is_trained_on_demand_next_to_lin(
    crowd,
    make_study,
    answer_trials,
    settings,
    researcher_carol,
    captured_tasks,
    django_capture_on_commit_callbacks,
):
    from rest_framework.test import APIClient

    study = make_study(
        owner=researcher_carol,
        n_test=12,
        n_sentinels=0,
        n_practice=0,
        config={"hit_size": 12, "training": {**RANDOM_ALEX, "every": None, "epochs": 1, "epochs_decay": 0}},
    )
    judged(crowd, study, 3)
    client = APIClient()
    client.force_authenticate(researcher_carol)
    with django_capture_on_commit_callbacks(execute=True):
        r = client.post(f"/api/v1/studies/{study.pk}/train/", {"variants": ["tune"]}, format="json")
    assert r.status_code == 202 and captured_tasks == [("training.study_retrain", (str(study.pk),), {})]
    assert TrainingState.objects.get(study=study).pending_variants == ["tune"]
    services.study_retrain(study=study)  # what the worker does
    tune = ModelVersion.objects.get(study=study, variant="tune")
    assert tune.status == "ready" and (settings.MEDIA_ROOT / tune.trunk_path).is_file()
    assert (
        hashlib.sha256((settings.MEDIA_ROOT / tune.trunk_path).read_bytes()).hexdigest() == tune.trunk_sha256
    )
    assert Evaluation.objects.filter(study=study, metric="trained alex-random tune", category="all").exists()
    assert ModelVersion.objects.filter(study=study, variant="lin", status="ready").exists()
    assert TrainingState.objects.get(study=study).pending_variants == []  # once, on demand
    assert (
        client.post(f"/api/v1/studies/{study.pk}/train/", {"variants": ["bogus"]}, format="json").status_code
        == 400
    )
