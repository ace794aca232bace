"""Many workers at once on real Postgres: no item over-assigned, none starved (label-studio #795)."""

import threading
from collections import Counter

import pytest
from django.db import connection

from core.exceptions import ApplicationError
from judgments.models import Trial
from judgments.services import assignment_start

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


def concurrent_starts(study, workers: list[str]) -> tuple[list, list]:
    barrier = threading.Barrier(len(workers))
    served, refused = [], []
    lock = threading.Lock()

    def run(worker: str) -> None:
        try:
            barrier.wait()
            try:
                a = assignment_start(study=study, platform="anonymous", worker_id=worker).assignment
                with lock:
                    served.append(a)
            except ApplicationError as exc:
                with lock:
                    refused.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return served, refused


@pytest.mark.django_db(transaction=True)
def test_concurrent_next_task_calls_on_a_one_overlap_item_serve_it_once(postgres, make_study):
    study = make_study(n_test=1, n_sentinels=0, n_practice=0, config={"judgments_per_item": {"train": 1, "val": 1}})
    served, refused = concurrent_starts(study, [f"w{n}" for n in range(12)])
    assert len(served) == 1 and len(refused) == 11
    assert all(e.extra.get("code") == "no_work" for e in refused)


@pytest.mark.django_db(transaction=True)
def test_many_concurrent_workers_never_over_assign_and_starve_nothing(postgres, make_study):
    target = {"train": 2, "val": 3}
    study = make_study(n_test=40, n_sentinels=5, n_practice=1, val_fraction=0.5,
                       config={"hit_size": 7, "judgments_per_item": target})  # fmt: skip
    need = 20 * 2 + 20 * 3  # 100 leases fill the study
    served, refused = concurrent_starts(study, [f"w{n}" for n in range(24)])
    leased = Counter(Trial.objects.filter(assignment__study=study, kind="test").values_list("item_id", flat=True))
    items = {i.pk: i for i in study.items.filter(role="test")}
    for item_id, n in leased.items():
        assert n <= target[items[item_id].split]  # never over-assigned
    total = sum(leased.values())
    assert total == min(need, 24 * 7), (len(served), [e.message for e in refused][:3])  # no "no work" while work was free
    assert len(set(leased)) == 40  # breadth-first: every item reached
    for a in served:  # and no worker holds an item twice
        ids = list(a.trials.filter(kind="test").values_list("item_id", flat=True))
        assert len(ids) == len(set(ids))
    assert len(served) + len(refused) == 24
