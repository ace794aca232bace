"""judgments.sql's hand-written reads and writes against the ORM they stand in for: values passed as they
are equal what the fields would prepare, model_rows builds the instances a queryset builds, and the rows a
start inserts (one unnest statement on PostgreSQL) read back as written. Meaningful on both databases; the
as-is shortcut and the unnest INSERT exist on PostgreSQL only (the integration tier)."""

from __future__ import annotations

import pytest
from django.db import connection

from judgments import sql
from judgments.answers import judgment_submit
from judgments.assignments import assignment_start
from judgments.models import Assignment, Judgment, Trial, Worker
from studies.models import Item, Study

pytestmark = pytest.mark.django_db


def _comparable(value):
    return getattr(value, "obj", value)  # psycopg's Jsonb wrapper holds the value in .obj


def _fields_own(obj) -> list:
    return [
        _comparable(f.get_db_prep_save(getattr(obj, f.attname), connection))
        for f in type(obj)._meta.concrete_fields
    ]


@pytest.fixture(params=["default", pytest.param("postgresql", marks=pytest.mark.integration)])
def database(request):
    """Each test twice: on the unit tier's database (SQLite), and in the integration tier on PostgreSQL,
    where the as-is values and the unnest INSERT are what runs."""
    if request.param == "postgresql":
        request.getfixturevalue("postgres")  # required there (fails under CI=true without it)
    return connection.vendor


@pytest.fixture
def started(database, make_study):
    study = make_study(n_test=6, n_sentinels=2, n_practice=1, config={"hit_size": 5})
    return assignment_start(study=study, platform="anonymous", worker_id="w-1")


def test_insert_params_equal_what_the_fields_prepare(started):
    trial = started.trials[-1]
    judgment_submit(
        token=started.assignment.token, trial_id=trial.public_id, response="left", rt_ms=500,
        idempotency_key="k" * 12, display={"refresh_hz": 60},
    )  # fmt: skip
    for obj in [started.assignment, *started.trials, Judgment.objects.get()]:
        assert [_comparable(v) for v in sql.insert_params([obj])] == _fields_own(obj)


def _values(obj) -> dict:
    return {f.attname: getattr(obj, f.attname) for f in type(obj)._meta.concrete_fields}


def test_model_rows_build_what_a_queryset_builds(started):
    a = started.assignment
    for model, pk in ((Assignment, a.pk), (Study, a.study_id), (Worker, a.worker_id)):
        ours, orm = sql.model_get(model, pk), model.objects.get(pk=pk)
        assert _values(ours) == _values(orm) and not ours._state.adding
    items = sql.model_rows(
        Item, "study_id = %s", [sql.prep(Item, "study_id", a.study_id)], fields=("id", "role")
    )
    assert {(i.pk, i.role) for i in items} == set(Item.objects.values_list("pk", "role"))
    assert items[0].get_deferred_fields() >= {"ref_image", "records"}


def test_a_starts_rows_read_back_as_written(started):
    for trial in started.trials:
        assert _values(Trial.objects.get(pk=trial.pk)) == _values(trial)
    assert _values(Assignment.objects.get(pk=started.assignment.pk)) == _values(started.assignment)
    assert [t.item_id for t in started.trials] == [t.item.pk for t in started.trials]


def test_an_over_long_value_is_refused_not_cut(started):
    """The unnest INSERT casts each parameter to its column's base type (varchar, not varchar(32), whose
    explicit cast would silently cut the value): a value too long for its column is refused, as the ORM's
    insert refuses it."""
    from django.db import DataError, transaction

    if connection.vendor != "postgresql":
        pytest.skip("SQLite keeps a string of any length; the cast exists on PostgreSQL only")
    trial = started.trials[0]
    unused = (
        Item.objects.filter(study=trial.item.study).exclude(trials__assignment=trial.assignment_id).first()
    )
    assert unused is not None  # (so that no unique constraint, only the length, can refuse the row)
    extra = Trial(
        assignment_id=trial.assignment_id,
        worker_id=trial.worker_id,
        item_id=unused.pk,
        position=999,
        kind=trial.kind,
        swap=False,
        public_id="p" * 40,  # the column holds 32
        created_at=trial.created_at,
        updated_at=trial.updated_at,
    )
    with pytest.raises(DataError), transaction.atomic():
        sql.insert_rows([extra])
    assert not Trial.objects.filter(position=999).exists()


def _answer(trial, key: str, response: str = "left") -> dict:
    return {
        "trial": trial.public_id,
        "response": response,
        "rt_ms": 640.5,
        "idempotency_key": key,
        "client_shown_at": 1.7e12,
        "client_answered_at": None,
        "durations": {},
        "display": {"refresh_hz": 60, "viewport": [1280, 720], "note": 'quote " and \\ slash', "dpr": 1.25},
    }


def test_a_batch_is_stored_as_the_orm_would_store_each_answer_and_counted_once(started):
    """One transaction, one write (a JSON document on PostgreSQL): every judgment reads back as the instance
    the answer path built (what Judgment.objects.create would write), and each counter (the items', the
    trials', the assignment's tallies and n_answered) moves exactly as one answer at a time moves it."""
    from judgments import tallies
    from judgments.answers import answer_input, judgments_submit_batch

    a = started.assignment
    trials = started.trials  # practice, sentinels and tests
    answers = [
        answer_input(_answer(t, f"key-{k:04d}", "right" if k % 2 else "left")) for k, t in enumerate(trials)
    ]
    outcomes = judgments_submit_batch(token=a.token, answers=answers)
    assert [o.error for o in outcomes] == [None] * len(trials)
    assert [o.result.n_answered for o in outcomes] == list(range(1, len(trials) + 1))
    for outcome in outcomes:
        assert _values(Judgment.objects.get(pk=outcome.result.judgment.pk)) == _values(
            outcome.result.judgment
        )
    stored = Judgment.objects.get(trial__public_id=trials[0].public_id)
    assert stored.display["note"] == 'quote " and \\ slash' and stored.rt_ms == 640.5
    assert stored.client_shown_at == 1.7e12 and stored.client_answered_at is None
    assert not Trial.objects.filter(assignment=a, answered=False).exists()
    fresh = Assignment.objects.get(pk=a.pk)
    assert fresh.n_answered == len(trials) and tallies.mismatches(study_id=a.study_id) == {}
    for item in Item.objects.filter(trials__assignment=a, role="test"):
        mine = Judgment.objects.filter(item=item)
        assert (item.n_judgments, item.n_open) == (mine.count(), 0)
        assert item.n_ones == sum(j.choice for j in mine)
    again = judgments_submit_batch(token=a.token, answers=answers)  # the client's retry: replays only
    assert [o.result.created for o in again] == [False] * len(trials)
    assert Judgment.objects.count() == len(trials) and Assignment.objects.get(pk=a.pk).n_answered == len(
        trials
    )


def test_two_answers_of_a_batch_under_one_key_store_the_first_and_refuse_the_second(started):
    """The write is refused whole by the unique key; each answer then goes again on its own."""
    from judgments.answers import answer_input, judgments_submit_batch

    t = [tr for tr in started.trials if tr.kind == "test"]
    answers = [answer_input(_answer(t[0], "same-key-1")), answer_input(_answer(t[1], "same-key-1"))]
    answers.append(answer_input(_answer(t[2], "other-key-2")))
    outcomes = judgments_submit_batch(token=started.assignment.token, answers=answers)
    assert outcomes[0].result.created and outcomes[2].result.created
    assert outcomes[1].error.status_code == 409 and "another trial" in outcomes[1].error.message
    assert Judgment.objects.count() == 2 and Assignment.objects.get(pk=started.assignment.pk).n_answered == 2
