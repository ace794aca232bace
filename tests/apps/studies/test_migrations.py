"""Data migrations on rows that exist: studies 0003 fills Item.n_open from the trials already leased."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [
    ("studies", "0002_item_n_judgments_study_build_progress_and_more"),
    ("judgments", "0002_trial_answered_unindexed"),
]
AFTER = [("studies", "0003_item_open_leases")]


@pytest.fixture
def migrator():
    """Runs migrations on the test database and always returns it to the latest schema."""
    yield MigrationExecutor
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


def test_open_lease_counts_are_computed_for_existing_trials(migrator):
    executor = migrator(connection)
    executor.migrate(BEFORE)
    apps = executor.loader.project_state(BEFORE).apps
    Study, Item = apps.get_model("studies", "Study"), apps.get_model("studies", "Item")
    Worker, Assignment, Trial = (apps.get_model("judgments", m) for m in ("Worker", "Assignment", "Trial"))
    study = Study.objects.create(name="old", kind="2afc", status="active")
    items = [
        Item.objects.create(study=study, index=i, ref_image="r", p0_image="a", p1_image="b") for i in range(3)
    ]
    later = timezone.now() + timezone.timedelta(hours=1)
    for w, (status, answered) in enumerate(
        [("started", False), ("started", True), ("started", False), ("submitted", True), ("returned", False)]
    ):
        worker = Worker.objects.create(platform="anonymous", external_hash=f"h{w}")
        a = Assignment.objects.create(
            study=study,
            worker=worker,
            status=status,
            lease_expires_at=later,
            platform="anonymous",
            token=f"t{w}",
        )
        Trial.objects.create(
            assignment=a,
            worker=worker,
            item=items[w % 2],
            position=0,
            kind="test",
            swap=False,
            answered=answered,
            public_id=f"p{w}",
        )
    executor = migrator(connection)
    executor.migrate(AFTER)
    apps = executor.loader.project_state(AFTER).apps
    counts = dict(apps.get_model("studies", "Item").objects.values_list("index", "n_open"))
    # item 0: workers 0 (open), 2 (open), 4 (returned: not a lease); item 1: 1 (answered), 3 (submitted)
    assert counts == {0: 2, 1: 0, 2: 0}


def test_adaptive_collection_fills_targets_from_each_config_and_counts_choice_ones(migrator):
    """studies 0007: n_target is each item's split count (the study's own or the kind's default), n_ones the
    accepted test judgments with choice 1 (an excluded assignment's do not count)."""
    before = [("studies", "0006_study_status_closed"), ("judgments", "0004_workerreview")]
    after = [("studies", "0007_adaptive_collection")]
    executor = migrator(connection)
    executor.migrate(before)
    apps = executor.loader.project_state(before).apps
    Study, Item = apps.get_model("studies", "Study"), apps.get_model("studies", "Item")
    Worker, Assignment, Trial, Judgment = (
        apps.get_model("judgments", m) for m in ("Worker", "Assignment", "Trial", "Judgment")
    )
    custom = Study.objects.create(
        name="custom", kind="2afc", status="active", config={"judgments_per_item": {"train": 4}}
    )
    jnd = Study.objects.create(name="jnd", kind="jnd", status="active", config={})
    for study in (custom, jnd):
        for i, split in enumerate(("train", "val")):
            Item.objects.create(study=study, index=i, split=split, ref_image="r", p0_image="a", p1_image="b")
    item = Item.objects.get(study=custom, split="train")
    later = timezone.now() + timezone.timedelta(hours=1)
    for w, (choice, excluded) in enumerate([(1, False), (1, False), (0, False), (1, True)]):
        worker = Worker.objects.create(platform="anonymous", external_hash=f"m{w}")
        a = Assignment.objects.create(
            study=custom, worker=worker, status="submitted", lease_expires_at=later, platform="anonymous",
            token=f"m{w}", excluded=excluded,
        )  # fmt: skip
        t = Trial.objects.create(
            assignment=a, worker=worker, item=item, position=0, kind="test", swap=False, answered=True,
            public_id=f"m{w}",
        )  # fmt: skip
        Judgment.objects.create(
            trial=t, assignment=a, item=item, worker=worker, kind="test", idempotency_key=f"key-{w}",
            response="right", choice=choice, presented_left="p0", rt_ms=500.0,
        )  # fmt: skip
    executor = migrator(connection)
    executor.migrate(after)
    apps = executor.loader.project_state(after).apps
    rows = apps.get_model("studies", "Item").objects.values_list("study__name", "split", "n_target", "n_ones")
    assert sorted(rows) == [
        ("custom", "train", 4, 2), ("custom", "val", 5, 0), ("jnd", "train", 3, 0), ("jnd", "val", 3, 0),
    ]  # fmt: skip
    assert all(i.active for i in apps.get_model("studies", "Item").objects.all())


def test_hit_tallies_are_counted_from_the_judgments_already_stored(migrator):
    """judgments 0005: each assignment's counters (judgments.tallies) from its judgments: tests, sentinels and
    those right, first-key answers with practice aside, and timing flags of any kind."""
    before = [("studies", "0008_item_draw"), ("judgments", "0004_workerreview")]
    after = [("judgments", "0005_tallies")]
    executor = migrator(connection)
    executor.migrate(before)
    apps = executor.loader.project_state(before).apps
    Study, Item = apps.get_model("studies", "Study"), apps.get_model("studies", "Item")
    Worker, Assignment, Trial, Judgment = (
        apps.get_model("judgments", m) for m in ("Worker", "Assignment", "Trial", "Judgment")
    )
    study = Study.objects.create(name="jnd", kind="jnd", status="active", config={})
    items = [
        Item.objects.create(study=study, index=i, ref_image="r", p0_image="a", p1_image="b") for i in range(5)
    ]
    later = timezone.now() + timezone.timedelta(hours=1)
    answers = [  # kind, response, correct, flagged
        ("practice", "same", True, True),
        ("sentinel", "same", True, False),
        ("sentinel", "different", False, True),
        ("test", "same", None, True),
        ("test", "different", None, False),
    ]
    tokens = []
    for w in range(2):
        worker = Worker.objects.create(platform="anonymous", external_hash=f"t{w}")
        a = Assignment.objects.create(
            study=study, worker=worker, status="submitted", lease_expires_at=later, platform="anonymous",
            token=f"t{w}",
        )  # fmt: skip
        tokens.append(a.token)
        for pos, (kind, response, correct, flagged) in enumerate(answers[: 5 - 2 * w]):
            t = Trial.objects.create(
                assignment=a, worker=worker, item=items[pos], position=pos, kind=kind, swap=False,
                answered=True, public_id=f"t{w}-{pos}",
            )  # fmt: skip
            Judgment.objects.create(
                trial=t, assignment=a, item=items[pos], worker=worker, kind=kind,
                idempotency_key=f"key-{w}-{pos}", response=response, choice=int(response == "same"),
                presented_left="p0", rt_ms=500.0, correct=correct, timing_flagged=flagged,
            )  # fmt: skip
    executor = migrator(connection)
    executor.migrate(after)
    apps = executor.loader.project_state(after).apps
    rows = apps.get_model("judgments", "Assignment").objects.order_by("token")
    got = [(a.n_tests, a.n_sentinels, a.n_sentinels_right, a.n_first_key, a.n_flagged) for a in rows]
    assert got == [(2, 2, 1, 2, 3), (0, 2, 1, 1, 2)]
