"""Reviewer rev-adaptive (issue 20), on real Postgres: a rescoring in flight and assignment starts. Failed
against main when written; see the review report for the suggested fix."""

import threading

import pytest
from django.db import connection, transaction

from judgments.assignments import assignment_start

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


@pytest.mark.django_db(transaction=True)
def test_a_start_that_refills_the_pool_never_waits_for_a_rescoring_in_flight(postgres, make_study):
    """docs/adaptive.md and training.rescoring: "Assignment never waits on it". The rescoring writes every
    candidate's score with one bulk_update (one transaction over all inactive candidates: tens of UPDATEs
    of 500 rows on a large pool), and a refill (judgments.pool._release) updates candidates' active /
    propensity rows too, so a start that refills waits for the whole rescoring transaction, holding the
    per-study pool lock that every other refilling start then queues behind. Both write the same rows in
    unrelated orders, so they can also deadlock (PostgreSQL then aborts one: a failed start). Here the
    rescoring's write is held open while a start refills, under a 2 s lock_timeout: the start must not
    block. Suggested: release with SELECT ... FOR UPDATE SKIP LOCKED on the candidates read in _release
    (draw among those not held), and have the rescoring write scores in short per-batch transactions that
    skip rows locked by a release."""
    from studies.models import Item, Study

    study = make_study(
        n_test=40,
        n_sentinels=0,
        n_practice=0,
        val_fraction=0.25,
        config={
            "hit_size": 2,
            "sampling": {"sampler": "disagreement", "pool_factor": 1, "uniform_share": 0.2},
        },
    )
    trains = Item.objects.filter(study=study, role="test", split="train")
    trains.update(active=False, score=0.1)
    Study.objects.filter(pk=study.pk).update(train_budget=8)
    study.refresh_from_db()

    written, finish = threading.Event(), threading.Event()
    batch_ids: list = []

    # adfix: the reviewer held one transaction over every candidate (main's single bulk_update); the rescoring
    # now writes per batch, so the test holds one batch's transaction (half the candidates) open instead: a
    # refill must draw among the others without waiting (with all held it would correctly release nothing).
    def rescoring() -> None:  # training.rescoring._scores_write's batch transaction, held open mid-flight
        try:
            with transaction.atomic():
                pks = list(trains.filter(active=False).order_by("index").values_list("pk", flat=True))
                batch = pks[: len(pks) // 2]
                batch_ids.extend(batch)
                held = Item.objects.filter(pk__in=batch).order_by("pk").select_for_update(skip_locked=True)
                rows = [Item(pk=pk, score=0.9) for pk in held.values_list("pk", flat=True)]
                Item.objects.bulk_update(rows, ["score"])
                written.set()
                finish.wait(30)
        finally:
            connection.close()

    outcome: dict = {}

    def start() -> None:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SET lock_timeout = '2s'")
            outcome["assignment"] = assignment_start(study=study, platform="anonymous", worker_id="w0")
        except Exception as exc:  # noqa: BLE001 - the failure is what the test reports
            outcome["error"] = exc
        finally:
            connection.close()

    writer = threading.Thread(target=rescoring)
    writer.start()
    assert written.wait(30)
    starter = threading.Thread(target=start)
    starter.start()
    starter.join(30)
    finish.set()
    writer.join(30)
    assert "error" not in outcome, f"the start waited on the rescoring: {outcome.get('error')!r}"
    assert trains.filter(active=True).exists()
    assert not trains.filter(active=True, pk__in=batch_ids).exists(), "a held candidate was released"
