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
