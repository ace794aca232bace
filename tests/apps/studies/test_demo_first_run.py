"""The first run's demo (docs/first-run.md): the CNN pool in the background with its progress, its items
joining the 2AFC demo under started HITs, the JND and simulated-crowd studies, and what a restart reuses."""

from datetime import timedelta

import pytest
from django.utils import timezone

from judgments.assignments import assignment_start
from judgments.models import Trial
from studies.models import BackgroundJob, Item, Study
from studies.selectors import cnn_pool_progress
from studies.services import (
    CNN_POOL_JOB,
    cnn_pool_train,
    demo_cnn_items_join,
    demo_cnn_pool_pending,
    demo_cnn_pool_run,
    demo_extra_studies_ensure,
    demo_studies,
    demo_study_ensure,
)

pytestmark = pytest.mark.django_db

TINY_BUDGET = {"steps": 6, "batch_size": 4, "snapshots": [2, 6], "checkpoint_every": 2}


@pytest.fixture
def pool_dir(settings, tmp_path):
    settings.CNN_POOL_DIR = tmp_path / "pool"
    settings.PERCEPTLAB = {
        **settings.PERCEPTLAB,
        "DEMO_CNN": True,
        "DEMO_CNN_POOL": {"n_models": 2, "budget": TINY_BUDGET},
        "DEMO_CNN_ITEMS": 12,
    }
    return settings.CNN_POOL_DIR


def _open_leases_exact(study) -> None:
    """Every item's n_open equals its unanswered test trials in started assignments."""
    for item in study.items.all():
        unanswered = Trial.objects.filter(
            item=item, kind=Trial.Kind.TEST, answered=False, assignment__status="started"
        ).count()
        assert item.n_open == unanswered, item.index


def test_cnn_items_join_the_demo_after_a_hit_was_started(pool_dir, researcher_carol, answer_trials):
    study, _ = demo_study_ensure(owner=researcher_carol, n_items=30)
    study.config = {**study.config, "hit_size": 10}
    Study.objects.filter(pk=study.pk).update(config=study.config)
    started = assignment_start(study=study, platform="anonymous", worker_id="early").assignment
    answer_trials(started, lambda trial, item: "p0", limit=3)
    before = {t.pk: (t.item_id, t.position) for t in started.trials.all()}
    last_index = study.items.order_by("-index").first().index

    cnn_pool_train(n_models=2, budget=TINY_BUDGET)
    added = demo_cnn_items_join()

    assert added == study.items.filter(category="cnn").count() > 0
    new = study.items.filter(category="cnn")
    assert all(i.role == Item.Role.TEST and i.n_judgments == 0 and i.n_open == 0 for i in new)
    assert min(new.values_list("index", flat=True)) == last_index + 1
    assert study.items.values("index").distinct().count() == study.items.count()
    assert {t.pk: (t.item_id, t.position) for t in started.trials.all()} == before  # the HIT is untouched
    _open_leases_exact(study)
    # the started HIT is still answered and submitted as before; a new worker can be handed the CNN items
    answer_trials(started, lambda trial, item: "p0")
    assert not started.trials.filter(answered=False).exists()
    Study.objects.filter(pk=study.pk).update(config={**study.config, "hit_size": 100})  # room for all items
    study.refresh_from_db()
    later = assignment_start(study=study, platform="anonymous", worker_id="later").assignment
    assert later.trials.filter(item__category="cnn").exists()
    _open_leases_exact(study)
    assert demo_cnn_items_join() == 0  # once only


def test_no_items_join_without_a_ready_pool(pool_dir, researcher_carol):
    demo_study_ensure(owner=researcher_carol, n_items=5)
    assert demo_cnn_items_join() == 0


def test_the_pool_job_reports_progress_then_is_done_and_not_trained_again(
    pool_dir, researcher_carol, monkeypatch
):
    demo_study_ensure(owner=researcher_carol, n_items=10)
    seen = []
    real = cnn_pool_train

    def spy(**kw):
        def report(done, total):
            seen.append((BackgroundJob.objects.get(name=CNN_POOL_JOB).state, done, total))
            kw["on_progress"](done, total)

        return real(**{**kw, "on_progress": report})

    monkeypatch.setattr("studies.services.cnn_pool_train", spy)
    result = demo_cnn_pool_run(n_models=2, budget=TINY_BUDGET, jobs=1)
    assert [s[1:] for s in seen] == [(1, 2), (2, 2)] and seen[0][0] == BackgroundJob.State.RUNNING
    job = BackgroundJob.objects.get(name=CNN_POOL_JOB)
    assert job.state == BackgroundJob.State.DONE and job.done == job.total == 2
    assert result["demo_items_added"] == demo_studies()["2afc"].items.filter(category="cnn").count() > 0

    monkeypatch.setattr("studies.services.cnn_pool_train", lambda **kw: pytest.fail("trained again"))
    assert demo_cnn_pool_run(n_models=2, budget=TINY_BUDGET) == job.result


def test_a_failed_pool_job_says_why(pool_dir, monkeypatch):
    def boom(**kw):
        raise RuntimeError("out of disk")

    monkeypatch.setattr("studies.services.cnn_pool_train", boom)
    with pytest.raises(RuntimeError):
        demo_cnn_pool_run(n_models=2, budget=TINY_BUDGET)
    job = BackgroundJob.objects.get(name=CNN_POOL_JOB)
    assert job.state == BackgroundJob.State.FAILED and "out of disk" in job.message


def test_the_pool_is_pending_until_done_and_an_interrupt_leaves_it_queued(pool_dir, monkeypatch):
    assert not demo_cnn_pool_pending(create=False)  # demo_setup --skip-cnn asked for none: nothing to train
    assert demo_cnn_pool_pending()
    assert demo_cnn_pool_pending(create=False)
    assert BackgroundJob.objects.get(name=CNN_POOL_JOB).state == BackgroundJob.State.QUEUED

    def interrupted(**kw):
        kw["on_progress"](1, 2)
        raise KeyboardInterrupt

    monkeypatch.setattr("studies.services.cnn_pool_train", interrupted)
    with pytest.raises(KeyboardInterrupt):
        demo_cnn_pool_run(n_models=2, budget=TINY_BUDGET)
    job = BackgroundJob.objects.get(name=CNN_POOL_JOB)
    assert job.state == BackgroundJob.State.QUEUED and "resumes" in job.message
    assert demo_cnn_pool_pending()  # a restart trains it (from the checkpoints)
    cnn_pool_train(n_models=2, budget=TINY_BUDGET)
    BackgroundJob.objects.filter(name=CNN_POOL_JOB).update(state=BackgroundJob.State.DONE)
    assert not demo_cnn_pool_pending()


def test_progress_gives_model_k_of_n_and_time_left(settings, tmp_path):
    settings.CNN_POOL_DIR = tmp_path / "pool"
    assert cnn_pool_progress() is None  # no demo pool: nothing to show
    now = timezone.now()
    job = BackgroundJob.objects.create(
        name=CNN_POOL_JOB,
        state=BackgroundJob.State.RUNNING,
        done=0,
        total=16,
        started_at=now - timedelta(seconds=40),
        step_started_at=now - timedelta(seconds=40),
        result={"steps_per_model": 200},
    )
    p = cnn_pool_progress(now=now)
    assert (p["current"], p["eta_s"], p["current_percent"]) == (1, None, 0)  # unknown before a snapshot
    model = settings.CNN_POOL_DIR / "model_000"
    model.mkdir(parents=True)
    for step in (5, 25, 80):
        (model / f"snapshot_{step:06d}.pt").write_bytes(b"")
    p = cnn_pool_progress(now=now)
    # 40 s for 0.4 of a model: 100 s a model, 15.6 models left
    assert (p["current"], p["current_percent"], p["eta_s"], p["elapsed_s"]) == (1, 40, 1560, 40)
    BackgroundJob.objects.filter(pk=job.pk).update(done=4, started_at=now - timedelta(seconds=400))
    p = cnn_pool_progress(now=now)
    assert (p["current"], p["total"], p["current_percent"], p["eta_s"]) == (5, 16, 0, 1200)  # 100 s each


def test_extra_demo_studies_are_created_once_and_built_by_the_worker(
    researcher_carol, captured_tasks, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        made = demo_extra_studies_ensure(owner=researcher_carol)
    jnd, crowd = made["jnd"][0], made["crowd"][0]
    assert made["jnd"][1] and made["crowd"][1]
    assert jnd.kind == "jnd" and crowd.kind == "2afc"
    assert crowd.collection["simulation"] and not jnd.collection["simulation"]
    weights = crowd.collection["training"]["backbones"][0]["weights"]
    assert weights in ("auto", "kmeans", "random")  # a trunk that trains offline, never ImageNet
    assert "simulated" in crowd.name.lower()
    builds = sorted(args[0] for name, args, _ in captured_tasks if name == "studies.study_build_stimuli")
    assert builds == sorted([str(jnd.pk), str(crowd.pk)])
    assert {s.status for s in (Study.objects.get(pk=jnd.pk), Study.objects.get(pk=crowd.pk))} == {"building"}

    Study.objects.filter(pk__in=[jnd.pk, crowd.pk]).update(status=Study.Status.ACTIVE)
    with django_capture_on_commit_callbacks(execute=True):
        again = demo_extra_studies_ensure(owner=researcher_carol)
    assert again["jnd"] == (jnd, False) and again["crowd"] == (crowd, False)
    assert len(captured_tasks) == 2  # nothing rebuilt
    assert set(demo_studies()) == {"jnd", "crowd"}


def test_home_lists_the_demos_and_the_pool_progress(client, researcher_carol, captured_tasks):
    demo_study_ensure(owner=researcher_carol, n_items=5)
    made = demo_extra_studies_ensure(owner=researcher_carol)
    crowd = made["crowd"][0]
    building = client.get("/").content.decode()
    assert f'href="/dashboard/{crowd.pk}/"' in building and "building stimuli" in building
    assert "Demo: JND" not in building  # a person is offered built studies only
    Study.objects.filter(pk__in=[s.pk for s, _ in made.values()]).update(status=Study.Status.ACTIVE)
    BackgroundJob.objects.create(name=CNN_POOL_JOB, state=BackgroundJob.State.RUNNING, done=3, total=16)
    page = client.get("/").content.decode()
    assert "model <strong>4 of 16</strong> (3 done" in page
    assert f'href="/dashboard/{crowd.pk}/"' in page  # watched on the dashboard
    assert f'href="/s/{crowd.pk}/"' not in page  # never offered to a person
    assert page.index("Demo: traditional") < page.index("Demo: JND")
    client.force_login(researcher_carol)
    assert "model <strong>4 of 16</strong>" in client.get("/dashboard/").content.decode()


@pytest.mark.parametrize(
    "seconds, words", [(0, "0 s"), (40, "40 s"), (89, "1 min"), (1560, "26 min"), (7974, "2 h 13 min")]
)
def test_time_left_reads_as_people_say_it(seconds, words):
    from studies.selectors import duration_words

    assert duration_words(seconds) == words
