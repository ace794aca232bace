"""Data migrations on rows that exist: training 0003 fills Evaluation.kind from the stored metric names;
0004 moves a tune/scratch version's trunk path from train_info to trunk_path."""

import uuid

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("training", "0002_training_claim_heartbeat")]
AFTER = [("training", "0003_evaluation_kind")]
NAMES = {
    "human": "human",
    "l2": "baseline",
    "ssim": "baseline",
    "lpips-alex v0.1 (official)": "official",
    "alex-imagenet unweighted": "unweighted",
    "alex-imagenet untrained (init heads)": "untrained",
    "trained alex-imagenet lin": "trained",
    "trained alex-imagenet tune": "trained",
}


@pytest.fixture
def migrator():
    """Runs migrations on the test database and always returns it to the latest schema."""
    yield MigrationExecutor
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


def test_evaluation_kinds_are_filled_from_metric_names(migrator):
    executor = migrator(connection)
    executor.migrate(BEFORE)
    apps = executor.loader.project_state(BEFORE).apps
    study = apps.get_model("studies", "Study").objects.create(name="old", kind="2afc", status="active")
    Evaluation = apps.get_model("training", "Evaluation")
    run = uuid.uuid4()
    for metric in NAMES:
        for category in ("all", "cnn"):
            Evaluation.objects.create(
                study=study,
                run=run,
                metric=metric,
                measure="2afc",
                split="val",
                category=category,
                score=0.7,
                n_items=10,
                n_judgments=20,
            )
    executor = migrator(connection)
    executor.migrate(AFTER)
    apps = executor.loader.project_state(AFTER).apps
    rows = apps.get_model("training", "Evaluation").objects.values_list("metric", "kind")
    assert len(rows) == 2 * len(NAMES)
    assert {metric: kind for metric, kind in rows} == NAMES


def test_a_tune_versions_trunk_moves_from_train_info_to_trunk_path(migrator):
    before, after = (
        [("training", "0003_evaluation_kind")],
        [("training", "0004_modelversion_trunk_backbone_info")],
    )
    executor = migrator(connection)
    executor.migrate(before)
    apps = executor.loader.project_state(before).apps
    study = apps.get_model("studies", "Study").objects.create(name="old", kind="2afc", status="active")
    ModelVersion = apps.get_model("training", "ModelVersion")
    common = {"study": study, "backbone": "alex", "weights": "random", "status": "ready"}
    ModelVersion.objects.create(**common, variant="tune", version=1, train_info={"trunk": "models/s/t.pth"})
    ModelVersion.objects.create(**common, variant="lin", version=1, train_info={"losses": [0.6]})
    executor = migrator(connection)
    executor.migrate(after)
    apps = executor.loader.project_state(after).apps
    rows = dict(apps.get_model("training", "ModelVersion").objects.values_list("variant", "trunk_path"))
    assert rows == {"tune": "models/s/t.pth", "lin": ""}
