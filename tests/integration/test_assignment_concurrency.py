"""Many workers at once on real Postgres: no item over-assigned, none starved (label-studio #795)."""

import threading
from collections import Counter

import pytest
from django.db import connection

from core.exceptions import ApplicationError
from judgments.assignments import assignment_start
from judgments.models import Trial

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
    study = make_study(
        n_test=1, n_sentinels=0, n_practice=0, config={"judgments_per_item": {"train": 1, "val": 1}}
    )
    served, refused = concurrent_starts(study, [f"w{n}" for n in range(12)])
    assert len(served) == 1 and len(refused) == 11
    assert all(e.extra.get("code") == "no_work" for e in refused)


@pytest.mark.django_db(transaction=True)
def test_many_concurrent_workers_never_over_assign_and_starve_nothing(postgres, make_study):
    target = {"train": 2, "val": 3}
    study = make_study(
        n_test=40,
        n_sentinels=5,
        n_practice=1,
        val_fraction=0.5,
        config={"hit_size": 7, "judgments_per_item": target},
    )
    need = 20 * 2 + 20 * 3  # 100 leases fill the study
    served, refused = concurrent_starts(study, [f"w{n}" for n in range(24)])
    leased = Counter(
        Trial.objects.filter(assignment__study=study, kind="test").values_list("item_id", flat=True)
    )
    items = {i.pk: i for i in study.items.filter(role="test")}
    for item_id, n in leased.items():
        assert n <= target[items[item_id].split]  # never over-assigned
    total = sum(leased.values())
    assert total == min(need, 24 * 7), (
        len(served),
        [e.message for e in refused][:3],
    )  # no "no work" while work was free
    assert len(set(leased)) == 40  # breadth-first: every item reached
    for a in served:  # and no worker holds an item twice
        ids = list(a.trials.filter(kind="test").values_list("item_id", flat=True))
        assert len(ids) == len(set(ids))
    assert len(served) + len(refused) == 24


@pytest.mark.django_db(transaction=True)
def test_the_prepared_queue_query_matches_the_portable_one(postgres, make_study):
    """PostgreSQL leases items with hand-written SQL (assignments._window_rows); the ORM queue
    (assignments._window) is the definition SQLite uses. Same items, same order, for a study in mid-flight:
    items at different loads, both splits, items the worker already had, items to skip."""
    from django.db import transaction

    from judgments import assignments
    from judgments.models import Worker
    from studies.models import Item

    study = make_study(
        n_test=30, n_sentinels=2, config={"judgments_per_item": {"train": 3, "val": 2}, "hit_size": 8}
    )
    items = list(Item.objects.filter(study=study, role="test").order_by("index"))
    for k, item in enumerate(items):  # loads 0..3 spread over the items, targets raised, candidates
        Item.objects.filter(pk=item.pk).update(
            n_judgments=k % 3,
            n_open=(k // 3) % 2,
            split=("train", "val")[k % 2],
            n_target=(3, 2)[k % 2] + (k % 5 == 0),
            active=k % 7 != 3,
        )
    first = assignment_start(
        study=study, platform="anonymous", worker_id="w1"
    ).assignment  # w1 holds some items
    worker = Worker.objects.get(pk=first.worker_id)
    skip = {items[5].pk, items[8].pk}
    with transaction.atomic():
        raw = [i.pk for i in assignments._window_rows(study=study, worker=worker, skip=skip, n=50)]
        orm = list(
            assignments._window(study=study, worker=worker, skip=skip).values_list("pk", flat=True)[:50]
        )
    assert raw == orm, (len(raw), len(orm))
    held = set(Trial.objects.filter(worker=worker, kind="test").values_list("item_id", flat=True))
    assert len(raw) >= 10 and held and not (held | skip) & set(raw)


def _worker_loop(study, name: str, rounds: int, acknowledged: list, lock) -> None:
    """One annotator taking HITs and answering every trial (random sides) until the study has no work."""
    import random

    from judgments.answers import judgment_submit
    from judgments.qc import assignment_submit

    rng = random.Random(name)
    try:
        for r in range(rounds):
            try:
                a = assignment_start(study=study, platform="anonymous", worker_id=f"{name}-{r}").assignment
            except ApplicationError:
                return
            for trial in Trial.objects.filter(assignment=a).order_by("position"):
                result = judgment_submit(
                    token=a.token,
                    trial_id=trial.public_id,
                    response=rng.choice(["left", "right"]),
                    rt_ms=900.0,
                    idempotency_key=f"k-{trial.public_id}",
                )
                if result.created and trial.kind == "test":
                    with lock:
                        acknowledged.append(result.judgment.pk)
            assignment_submit(token=a.token)
    finally:
        connection.close()


def _run_crowd(study, n_threads: int, rounds: int) -> list:
    acknowledged: list = []
    lock = threading.Lock()
    threads = [
        threading.Thread(target=_worker_loop, args=(study, f"t{n}", rounds, acknowledged, lock))
        for n in range(n_threads)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    return acknowledged


@pytest.mark.django_db(transaction=True)
def test_bayesian_stopping_under_concurrent_starts_and_answers_keeps_max_budget_and_counts(
    postgres, make_study
):
    """Adaptive votes (judgments.stopping) with many annotators at once: no item past max, the train
    judgments within the study's vote budget, every acknowledged answer counted exactly once, and the
    items' counters equal to the rows they count."""
    from judgments.models import Judgment
    from studies.collection import train_vote_budget
    from studies.models import Item

    study = make_study(
        n_test=12,
        n_sentinels=0,
        n_practice=0,
        val_fraction=0,
        config={
            "hit_size": 3,
            "judgments_per_item": {"train": [2, 6], "val": 1},
            "stopping": {"confidence": 0.99, "tie_width": 0.05},
            "exclusion": {"min_sentinel_accuracy": None},
        },
    )
    acknowledged = _run_crowd(study, n_threads=8, rounds=40)
    budget = train_vote_budget(study.collection, 12)  # 12 x 4 = 48
    judgments = Judgment.objects.filter(item__study=study, kind="test")
    assert sorted(judgments.values_list("pk", flat=True)) == sorted(acknowledged)  # each counted once
    assert len(acknowledged) == budget  # the budget was spent, and not overspent
    per_item = Counter(judgments.values_list("item_id", flat=True))
    ones = Counter(judgments.filter(choice=1).values_list("item_id", flat=True))
    for item in Item.objects.filter(study=study, role="test"):
        assert item.n_judgments == per_item[item.pk] <= 6 and item.n_ones == ones[item.pk]
        assert 2 <= item.n_target <= 6 and item.n_open == 0
    assert sum(Item.objects.filter(study=study).values_list("n_target", flat=True)) == budget


@pytest.mark.django_db(transaction=True)
def test_concurrent_refills_of_a_candidate_pool_never_release_beyond_the_budget(postgres, make_study):
    """judgments.pool under concurrent starts: one refill at a time (advisory lock), the budget holds,
    every released item carries its propensity, and the val split is served as before."""
    from studies.models import Item, Study

    study = make_study(
        n_test=40,
        n_sentinels=2,
        n_practice=0,
        val_fraction=0.25,
        config={
            "hit_size": 2,
            "judgments_per_item": {"train": 1, "val": 2},
            "sampling": {"sampler": "disagreement", "pool_factor": 1, "uniform_share": 0.2},
            "exclusion": {"min_sentinel_accuracy": None},
        },
    )
    trains = Item.objects.filter(study=study, role="test", split="train")
    trains.update(active=False)
    Study.objects.filter(pk=study.pk).update(train_budget=9)
    study.refresh_from_db()
    served, _ = concurrent_starts(study, [f"w{n}" for n in range(16)])
    assert served
    released = list(trains.filter(active=True).values_list("propensity", "sampler_version"))
    assert len(released) == 9
    assert all(0 < p <= 1 and v == "uniform@1" for p, v in released)  # no scores yet: uniform
    leased = set(Trial.objects.filter(assignment__study=study, kind="test").values_list("item_id", flat=True))
    assert not leased & set(trains.filter(active=False).values_list("pk", flat=True))


@pytest.mark.django_db(transaction=True)
def test_the_queue_never_walks_past_full_items(postgres, make_study):
    """The scale path in small: 2,000 test items, the least-loaded level (load 2) almost all full (train
    items at their target of 2) with a few val items wanting 5 among them, as a BAPPS-shaped study becomes.
    The queue statement, as a generic prepared plan, reads its rows from item_queue_idx (open items only)
    and filters out none of the full ones; with the full items in the index it filtered out about 1,900."""
    import json

    from judgments import sql
    from studies.models import Item

    study = make_study(n_test=2000, n_sentinels=2, n_practice=0, val_fraction=0.0)
    tests = Item.objects.filter(study=study, role="test")
    tests.update(split="train", n_judgments=2, n_target=2)
    val = list(tests.order_by("index").values_list("pk", flat=True)[::20])  # every 20th: 100 open items
    Item.objects.filter(pk__in=val).update(split="val", n_target=5)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE studies_item")
        cursor.execute("SET plan_cache_mode = force_generic_plan")
        cursor.execute(
            "PREPARE queue_probe(uuid, uuid[], uuid, int) AS "
            + sql.window_sql().replace("%s::uuid[]", "$2").replace("%s", "${}").format(1, 3, 4)
        )
        cursor.execute(
            "EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE queue_probe(%s, '{}', gen_random_uuid(), 85)", [study.pk]
        )
        plan = cursor.fetchone()[0]
        cursor.execute("DEALLOCATE queue_probe")
        cursor.execute("RESET plan_cache_mode")
    plan = json.loads(plan) if isinstance(plan, str) else plan

    def scans(node):
        if node.get("Relation Name") == "studies_item":
            yield node
        for child in node.get("Plans", []):
            yield from scans(child)

    (scan,) = scans(plan[0]["Plan"])
    assert scan.get("Index Name") == "item_queue_idx", scan
    assert scan["Actual Rows"] == 85 and scan.get("Rows Removed by Filter", 0) == 0, scan


@pytest.mark.parametrize("writer", ["answer batch", "expiry", "targets sync"])
@pytest.mark.django_db(transaction=True)
def test_writers_of_several_items_take_them_in_id_order(postgres, make_study, writer):
    """Transactions that update several items must take them in one order, or each can hold what the other
    waits for (a deadlock, which PostgreSQL breaks after a second by failing one of them). A batch of
    answers, an expiry sweep (which releases an expired HIT's items) and a targets sync (a study's counts
    raised: every item below them) all lock the items in id order before writing: while another
    transaction holds one, the writer waits for it holding exactly the lower ones; once it is let go, the
    write completes."""
    from datetime import timedelta

    import psycopg
    from django.utils import timezone

    from judgments.answers import answer_input, judgments_submit_batch
    from judgments.assignments import _expire
    from judgments.models import Assignment
    from studies.models import Item
    from studies.targets import item_targets_sync

    study = make_study(n_test=8, n_sentinels=0, n_practice=0, config={"hit_size": 6})
    started = assignment_start(study=study, platform="anonymous", worker_id="w-lock")
    tests = [t for t in started.trials if t.kind == "test"]
    ids = sorted(t.item_id for t in tests)
    assert len(ids) >= 4
    answers = [
        answer_input(
            {"trial": t.public_id, "response": "left", "rt_ms": 500, "idempotency_key": f"lock-key-{k:03d}"}
        )
        for k, t in enumerate(tests)
    ]
    if writer == "expiry":
        past = timezone.now() - timedelta(seconds=1)
        Assignment.objects.filter(pk=started.assignment.pk).update(lease_expires_at=past)
    if writer == "targets sync":  # these items fell below their split's count (the others stay at it)
        targets = dict(Item.objects.filter(pk__in=ids).values_list("pk", "n_target"))
        Item.objects.filter(pk__in=ids).update(n_target=0)
    dsn = connection.get_connection_params()
    table = Item._meta.db_table
    holder = psycopg.connect(**dsn)
    middle = len(ids) // 2
    holder.execute(f"SELECT 1 FROM {table} WHERE id = %s FOR NO KEY UPDATE", [ids[middle]])
    done = []

    def write():
        try:
            if writer == "expiry":
                done.append(_expire(now=timezone.now(), study=study))
            elif writer == "targets sync":
                done.append(item_targets_sync(study=study))
            else:
                done.extend(judgments_submit_batch(token=started.assignment.token, answers=answers))
        finally:
            connection.close()

    thread = threading.Thread(target=write)
    thread.start()
    try:
        with psycopg.connect(**dsn, autocommit=True) as probe:
            waiting = 0
            for _ in range(200):  # until the writer waits on the held row
                waiting = probe.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = %s",
                    [dsn["dbname"]],
                ).fetchone()[0]
                if waiting:
                    break
                threading.Event().wait(0.05)
            assert waiting == 1
            held = []
            for item_id in ids:
                try:
                    with probe.transaction():
                        probe.execute(
                            f"SELECT 1 FROM {table} WHERE id = %s FOR NO KEY UPDATE NOWAIT", [item_id]
                        )
                except psycopg.errors.LockNotAvailable:
                    held.append(item_id)
            assert held == ids[: middle + 1]  # the lower ones by the writer, the middle one by the holder
    finally:
        holder.rollback()
        holder.close()
        thread.join(30)
    if writer == "expiry":
        assert done == [1] and set(Item.objects.filter(pk__in=ids).values_list("n_open", flat=True)) == {0}
    elif writer == "targets sync":
        assert (
            done == [len(ids)]
            and dict(Item.objects.filter(pk__in=ids).values_list("pk", "n_target")) == targets
        )
    else:
        assert [o.error for o in done] == [None] * len(tests) and all(o.result.created for o in done)
