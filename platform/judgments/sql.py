"""The hand-written SQL, in one place: the assignment queue's locking read (PostgreSQL) and the answer path.

Storing an answer is the platform's hottest write (one per trial per annotator). It runs five short
statements written out here instead of through the query compiler, whose per-statement cost was most of
an answer's CPU time (docs/platform.md, "Performance"). The statements are plain SQL that PostgreSQL and
SQLite both run; values are prepared by the models' own fields, and the INSERT covers every column of
Judgment, so the row is what `Judgment.objects.create` would write. The ORM definitions these statements
must match are the queue in judgments.assignments (`_window`) and `Judgment.objects.create`; the parity
tests (tests/integration/test_assignment_concurrency.py, tests/apps/judgments) pin them together.
"""

from __future__ import annotations

import functools
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from django.db import DEFAULT_DB_ALIAS, connection, connections

from judgments import tallies
from judgments.models import Assignment, Judgment, Trial
from studies.models import Item, Study

# What a start reads of an item: its queue position and what the annotator's page shows (not the records).
TRIAL_ITEM_FIELDS = (
    "id",
    "index",
    "role",
    "split",
    "n_judgments",
    "n_open",
    "active",
    "n_target",
    "ref_image",
    "p0_image",
    "p1_image",
    "expected",
)


@functools.lru_cache
def window_sql() -> str:
    """PostgreSQL: the queue (judgments.assignments._window) as one prepared statement that locks and
    returns up to n items, with the fields a start needs. Rows that SELECT ... FOR UPDATE returns are
    their latest committed versions, re-checked against the WHERE clause once locked (PostgreSQL's
    documented READ COMMITTED behaviour), so no second read is needed. Ordered like item_load_idx, which
    serves it."""
    item, trial = Item._meta.db_table, Trial._meta.db_table
    columns = ", ".join(Item._meta.get_field(name).column for name in window_fields())
    return (
        f"SELECT {columns} FROM {item} WHERE study_id = %s AND role = 'test' AND active "
        f"AND n_judgments + n_open < n_target AND NOT (id = ANY(%s::uuid[])) "
        f"AND id NOT IN (SELECT item_id FROM {trial} WHERE worker_id = %s AND kind = 'test') "
        f"ORDER BY study_id, n_judgments + n_open, index LIMIT %s FOR UPDATE OF {item} SKIP LOCKED"
    )


@functools.lru_cache
def window_fields() -> tuple[str, ...]:
    """TRIAL_ITEM_FIELDS in the model's field order, the order Model.from_db expects."""
    return tuple(f.attname for f in Item._meta.concrete_fields if f.attname in TRIAL_ITEM_FIELDS)


def window_rows(*, study_id, worker_id, skip: set, n: int) -> list[Item]:
    """PostgreSQL: lock and return up to n queue items (window_sql)."""
    params = [study_id, sorted(skip), worker_id, n]
    with HotCursor() as cursor:
        cursor.execute(window_sql(), params)
        rows = cursor.fetchall()
    return [Item.from_db(connection.alias, window_fields(), row) for row in rows]


@dataclass
class AnswerRow:
    trial_id: object
    trial_kind: str
    swap: bool
    answered: bool
    item_id: object
    pk: object  # the assignment's
    status: str
    lease_expires_at: object
    worker_id: object
    n_answered: int
    n_trials: int
    study_id: object
    study_kind: str
    study_config: dict
    expected: str
    judgment_id: object
    judgment_key: str | None


def _db():
    """The default connection itself. `django.db.connection` is a proxy whose every attribute read is a
    thread-local lookup; the loops below read it once per column of every row (hundreds per start)."""
    return connections[DEFAULT_DB_ALIAS]


class HotCursor:
    """Runs the answer path's statements. On PostgreSQL: a server-side-binding psycopg cursor whose
    statements are prepared once per connection (planning them cost PostgreSQL more than running them;
    Django leaves prepared statements off, and apps.py enables them for statements that ask); errors come
    out as Django's. Elsewhere: Django's cursor."""

    def __enter__(self):
        db = _db()
        db.ensure_connection()
        self.prepared = db.vendor == "postgresql" and db.connection.prepare_threshold is not None
        if self.prepared:
            import psycopg

            self.errors = db.wrap_database_errors
            self.errors.__enter__()
            self.cursor = psycopg.Cursor(db.connection)
        else:
            self.cursor = db.cursor()
        return self

    def execute(self, sql: str, params: list) -> None:
        if self.prepared:
            self.cursor.execute(sql, params, prepare=True)
        else:
            self.cursor.execute(sql, params)

    def fetchone(self):
        return self.cursor.fetchone()

    def fetchall(self):
        return self.cursor.fetchall()

    def __exit__(self, *exc):
        self.cursor.close()
        if self.prepared:
            return self.errors.__exit__(*exc)
        return False


def _uuid(value):
    return value if value is None or isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _aware(value):
    if isinstance(value, str):  # SQLite
        value = datetime.fromisoformat(value)
    return value if value is None or value.tzinfo else value.replace(tzinfo=UTC)


@functools.lru_cache
def answer_sql(for_update: bool) -> str:
    """The answer path's read (built once per process)."""
    t, a, s, i, j = (model._meta.db_table for model in (Trial, Assignment, Study, Item, Judgment))
    sql = (
        f"SELECT t.id, t.kind, t.swap, t.answered, t.item_id, a.id, a.status, a.lease_expires_at, "
        f"a.worker_id, "
        f"a.n_answered, a.n_trials, s.id, s.kind, s.config, i.expected, j.id, j.idempotency_key "
        f"FROM {t} t JOIN {a} a ON a.id = t.assignment_id JOIN {s} s ON s.id = a.study_id "
        f"JOIN {i} i ON i.id = t.item_id LEFT JOIN {j} j ON j.trial_id = t.id "
        f"WHERE a.token = %s AND t.public_id = %s"
    )
    # FOR UPDATE OF a: the assignment row only, so answers to other assignments never wait
    return sql + " FOR UPDATE OF a" if for_update else sql


@functools.lru_cache
def insert_sql(model, vendor: str, rows: int = 1) -> str:
    """INSERT of every column of `model` for `rows` rows, in concrete-field order (built once per process)."""
    quote = connection.ops.quote_name
    fields = model._meta.concrete_fields
    row = f"({', '.join(['%s'] * len(fields))})"
    return (
        f"INSERT INTO {model._meta.db_table} ({', '.join(quote(f.column) for f in fields)}) "
        f"VALUES {', '.join([row] * rows)}"
    )


def insert_params(objs) -> list:
    """Every column's value of each object, prepared by its model field (what `save()` would write)."""
    fields, db = type(objs[0])._meta.concrete_fields, _db()
    return [f.get_db_prep_save(getattr(obj, f.attname), db) for obj in objs for f in fields]


def insert_rows(objs: list, batch: int = 500) -> None:
    """Insert model instances (primary keys and timestamps already set) with multi-row INSERTs: the
    assignment start's trials, without the query compiler's per-row cost."""
    model = type(objs[0])
    with HotCursor() as cursor:
        for k in range(0, len(objs), batch):
            chunk = objs[k : k + batch]
            cursor.execute(insert_sql(model, connection.vendor, len(chunk)), insert_params(chunk))
    for obj in objs:
        obj._state.adding, obj._state.db = False, connection.alias


def answer_row(token: str, trial_id: str) -> AnswerRow | None:
    sql = answer_sql(connection.features.has_select_for_update_of)
    with HotCursor() as cursor:
        cursor.execute(sql, [token, trial_id])
        row = cursor.fetchone()
    if row is None:
        return None
    (
        t_id,
        t_kind,
        swap,
        answered,
        item_id,
        a_id,
        status,
        lease,
        worker_id,
        n_answered,
        n_trials,
        s_id,
        s_kind,
        config,
        expected,
        j_id,
        j_key,
    ) = row
    return AnswerRow(
        _uuid(t_id),
        t_kind,
        bool(swap),
        bool(answered),
        _uuid(item_id),
        _uuid(a_id),
        status,
        _aware(lease),
        _uuid(worker_id),
        n_answered,
        n_trials,
        _uuid(s_id),
        s_kind,
        json.loads(config) if isinstance(config, str) else config,
        expected,
        _uuid(j_id),
        j_key,
    )


@functools.lru_cache
def store_answer_sql(vendor: str, test: bool) -> list[str]:
    """The answer path's writes (built once per process): the judgment, the trial marked answered, the
    assignment's counts (judgments.tallies) and lease, and for a test trial the item's counts. On PostgreSQL
    one statement (the writes as data-modifying CTEs, each run exactly once): one round trip, not four."""
    trial, assignment, item = (model._meta.db_table for model in (Trial, Assignment, Item))
    writes = [
        insert_sql(Judgment, vendor),
        f"UPDATE {trial} SET answered = %s WHERE id = %s",
        # The lease moves forward only once less than half of it is left, so that most answers leave every
        # indexed column of the assignment alone (a heap-only update).
        # last_answer_at (unindexed) bounds what heartbeats may extend the lease to.
        # The judgment's tallies (judgments.tallies) are kept in the same statement.
        f"UPDATE {assignment} SET n_answered = n_answered + 1, "
        + "".join(f"{field} = {field} + %s, " for field in tallies.FIELDS.values())
        + "last_answer_at = %s, lease_expires_at = "
        "CASE WHEN lease_expires_at < %s THEN %s ELSE lease_expires_at END WHERE id = %s",
    ]
    if test:  # the lease becomes a judgment: load (n_judgments + n_open) is unchanged
        writes.append(
            f"UPDATE {item} SET n_judgments = n_judgments + 1, n_open = n_open - 1, n_ones = n_ones + %s "
            f"WHERE id = %s"
        )
    if vendor != "postgresql":
        return writes
    return ["WITH " + ", ".join(f"w{k} AS ({sql})" for k, sql in enumerate(writes)) + " SELECT 1"]


def store_answer(judgment: Judgment, row: AnswerRow, lease_expires_at, renew_before) -> None:
    prep = lambda field, value: field.get_db_prep_save(value, connection)  # noqa: E731
    pk = lambda model, value: model._meta.pk.get_db_prep_value(value, connection)  # noqa: E731
    lease = Assignment._meta.get_field("lease_expires_at")
    test = row.trial_kind == Trial.Kind.TEST
    params = [
        insert_params([judgment]),
        [True, pk(Trial, row.trial_id)],
        [
            *tallies.increments(
                trial_kind=row.trial_kind,
                response=judgment.response,
                correct=judgment.correct,
                flagged=judgment.timing_flagged,
            ),
            prep(lease, judgment.created_at),
            prep(lease, renew_before),
            prep(lease, lease_expires_at),
            pk(Assignment, row.pk),
        ],
    ] + ([[judgment.choice, pk(Item, row.item_id)]] if test else [])
    statements = store_answer_sql(connection.vendor, test)
    if len(statements) == 1:
        params = [[value for group in params for value in group]]
    with HotCursor() as cursor:
        for sql, values in zip(statements, params, strict=True):
            cursor.execute(sql, values)
    judgment._state.adding = False
    judgment._state.db = connection.alias
