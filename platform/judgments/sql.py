"""The hand-written SQL, in one place: the assignment queue's locking read (PostgreSQL), the answer path, and
the start's and the completion's reads and writes (model_rows, insert_rows and the statements at the end).

Storing answers is the platform's hottest write (one per trial per annotator). A batch of them (one answer
included) is one read and one write written out here (answer_rows, store_answers) instead of through the
query compiler, whose per-statement cost was most of an answer's CPU time (docs/platform.md,
"Performance"). The statements are plain SQL that PostgreSQL and SQLite both run; values are prepared by
the models' own fields (on PostgreSQL the judgments travel as one JSON document, json_rows), and the INSERT
covers every column of Judgment, so the row is what `Judgment.objects.create` would write. The ORM
definitions these statements must match are the queue in judgments.assignments (`_window`) and
`Judgment.objects.create`; the parity tests (tests/integration/test_assignment_concurrency.py,
tests/apps/judgments) pin them together.
"""

from __future__ import annotations

import functools
import json
import re
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from django.db import DEFAULT_DB_ALIAS, connection, connections

from judgments import tallies
from judgments.models import Assignment, Judgment, Trial, new_token
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
    documented READ COMMITTED behaviour), so no second read is needed. Ordered like item_queue_idx, which
    serves it: its condition (open items only) is written as the index's, so the planner sees that it
    applies."""
    item, trial = Item._meta.db_table, Trial._meta.db_table
    columns = ", ".join(Item._meta.get_field(name).column for name in window_fields())
    return (
        f"SELECT {columns} FROM {item} WHERE study_id = %s AND role = 'test' AND active "
        f"AND n_target > n_judgments + n_open AND NOT (id = ANY(%s::uuid[])) "
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
    out as Django's, and they are logged as Django logs its own (DEBUG, or a test capturing queries), so
    query counts include them. Elsewhere: Django's cursor."""

    def __enter__(self):
        db = _db()
        db.ensure_connection()
        self.prepared = db.vendor == "postgresql" and db.connection.prepare_threshold is not None
        if self.prepared:
            import psycopg

            self.errors = db.wrap_database_errors
            self.errors.__enter__()
            self.cursor = psycopg.Cursor(db.connection)
            self.log = db.queries_log if db.queries_logged else None
        else:
            self.cursor = db.cursor()
        return self

    def execute(self, sql: str, params: list) -> None:
        if not self.prepared:
            self.cursor.execute(sql, params)
        elif self.log is None:
            self.cursor.execute(sql, params, prepare=True)
        else:
            start = time.monotonic()
            try:
                self.cursor.execute(sql, params, prepare=True)
            finally:
                self.log.append({"sql": sql, "time": f"{time.monotonic() - start:.3f}"})

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


ANSWER_COLUMNS = (
    "t.id, t.kind, t.swap, t.answered, t.item_id, a.id, a.status, a.lease_expires_at, a.worker_id, "
    "a.n_answered, a.n_trials, s.id, s.kind, {config}, i.expected, j.id, j.idempotency_key, t.public_id"
)


@functools.lru_cache
def answer_sql(vendor: str, n: int, for_update: bool) -> str:
    """The answer path's read of n trials of one assignment (built once per process; on PostgreSQL, n=0:
    one statement for any number, the trials' public ids as an array).

    With `for_update` (PostgreSQL) it also takes the locks the answers' write needs, in one round trip and
    in the order every writer of an assignment and its items takes them: the assignment's row first (only
    that row, so answers to other assignments never wait), then the trials' test items in id order (FOR
    NO KEY UPDATE, the lock the write's UPDATE takes, which leaves other answers free to reference the
    items). Two transactions that lock several items in one order never wait on each other in a cycle;
    the items' CTE reads the assignment's, so the assignment is locked before any item."""
    t, a, s, i, j = (model._meta.db_table for model in (Trial, Assignment, Study, Item, Judgment))
    columns = ANSWER_COLUMNS.format(config="s.config::text" if vendor == "postgresql" else "s.config")
    joins = (
        f"JOIN {s} s ON s.id = a.study_id JOIN {i} i ON i.id = t.item_id LEFT JOIN {j} j ON j.trial_id = t.id"
    )
    if not for_update:
        trials = f"t.public_id IN ({', '.join(['%s'] * n)})" if n else "t.public_id = ANY(%s)"
        return (
            f"SELECT {columns} FROM {t} t JOIN {a} a ON a.id = t.assignment_id {joins} "
            f"WHERE a.token = %s AND {trials}"
        )
    return (
        f"WITH a AS (SELECT * FROM {a} WHERE token = %s FOR UPDATE), "
        f"lk AS (SELECT id FROM {i} WHERE id IN (SELECT item_id FROM {t} "
        f"WHERE assignment_id = (SELECT id FROM a) AND public_id = ANY(%s) AND kind = 'test') "
        "ORDER BY id FOR NO KEY UPDATE) "
        f"SELECT {columns} FROM {t} t JOIN a ON a.id = t.assignment_id {joins} "
        f"CROSS JOIN (SELECT count(*) FROM lk) AS locked WHERE t.public_id = ANY(%s)"
    )


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


# The Python types PostgreSQL's columns take as they are, by field type: for a value of exactly this type
# (or None), Django's get_db_prep_save on PostgreSQL returns the value itself (a timezone-aware datetime:
# DateTimeField's check of naive values aside, adapt_datetimefield_value is the identity there). Integer
# fields are left out (psycopg 3 gets them wrapped in a sized type), as are JSON fields (wrapped in Jsonb).
AS_IS = {
    "UUIDField": uuid.UUID,
    "CharField": str,
    "TextField": str,
    "BooleanField": bool,
    "FloatField": float,
    "DateTimeField": datetime,
}


@functools.lru_cache
def column_plan(model, vendor: str) -> tuple:
    """(attname, field, the type its values pass as they are or None) per concrete field of `model`, in
    column order; on other databases than PostgreSQL every value goes through its field."""
    plan = []
    for field in model._meta.concrete_fields:
        kind = (field.target_field if field.is_relation else field).get_internal_type()
        plan.append((field.attname, field, AS_IS.get(kind) if vendor == "postgresql" else None))
    return tuple(plan)


def insert_params(objs) -> list:
    """Every column's value of each object, prepared by its model field (what `save()` would write), or
    as it is where that is what the field would return (column_plan)."""
    db = _db()
    plan, out = column_plan(type(objs[0]), db.vendor), []
    append = out.append
    for obj in objs:
        values = obj.__dict__
        for attname, field, as_is in plan:
            value = values[attname] if attname in values else getattr(obj, attname)
            if as_is is not None and (
                value is None
                or (type(value) is as_is and (as_is is not datetime or value.tzinfo is not None))
            ):
                append(value)
            else:
                append(field.get_db_prep_save(value, db))
    return out


LENGTH = re.compile(r"\(\d+\)$")  # a type's length modifier: varchar(32) -> varchar


@functools.lru_cache
def insert_unnest_sql(model, constant: tuple) -> str:
    """PostgreSQL: INSERT of every column of `model`, in concrete-field order, from one parameter per
    column: a value for the columns `constant` marks (the same in every row: a start's assignment,
    worker, timestamps), else an array (unnest), the constants' parameters first. One statement whatever
    the number of rows: psycopg parses a statement of many parameters afresh on every call (it caches only
    those of at most 50), and PostgreSQL would plan each row count anew; and dumping an array costs
    psycopg several Python calls per element, which the constants skip."""
    quote, fields = connection.ops.quote_name, model._meta.concrete_fields
    # each parameter cast to its column's base type: varchar, not varchar(n), whose explicit cast would cut an
    # over-long value where the column's own (assignment) cast refuses it, as the ORM's insert does
    typed = ["%s::" + LENGTH.sub("", field.db_type(connection)) for field in fields]
    select = [typed[c] if constant[c] else f"u.c{c}" for c in range(len(fields))]
    arrays = [f"{typed[c]}[]" for c in range(len(fields)) if not constant[c]]
    names = [f"c{c}" for c in range(len(fields)) if not constant[c]]
    source = f" FROM unnest({', '.join(arrays)}) AS u({', '.join(names)})" if arrays else ""
    return (
        f"INSERT INTO {model._meta.db_table} ({', '.join(quote(f.column) for f in fields)}) "
        f"SELECT {', '.join(select)}{source}"
    )


def _unnest_params(values: list, width: int) -> tuple[tuple, list]:
    """(which columns are constant, the parameters) for insert_unnest_sql. With one row every column is a
    constant; with more, a column whose values are all equal is one (never all columns: the rows would
    collapse into one)."""
    columns = [values[c::width] for c in range(width)]
    if len(columns[0]) == 1:
        return (True,) * width, [column[0] for column in columns]
    constant = tuple(column.count(column[0]) == len(column) for column in columns)
    if all(constant):
        constant = (False,) * width
    return constant, [column[0] for column, same in zip(columns, constant, strict=True) if same] + [
        column for column, same in zip(columns, constant, strict=True) if not same
    ]


def insert_rows(objs: list, batch: int = 500) -> None:
    """Insert model instances (primary keys and timestamps already set) in one statement per `batch` rows:
    the assignment start's trials, without the query compiler's per-row cost (PostgreSQL: one array per
    column, insert_unnest_sql; elsewhere a multi-row VALUES)."""
    model = type(objs[0])
    width = len(model._meta.concrete_fields)
    with HotCursor() as cursor:
        for k in range(0, len(objs), batch):
            chunk = objs[k : k + batch]
            values = insert_params(chunk)
            if connection.vendor == "postgresql":
                constant, params = _unnest_params(values, width)
                cursor.execute(insert_unnest_sql(model, constant), params)
            else:
                cursor.execute(insert_sql(model, connection.vendor, len(chunk)), values)
    for obj in objs:
        obj._state.adding, obj._state.db = False, connection.alias


def answer_rows(token: str, trial_ids: list[str]) -> dict[str, AnswerRow]:
    """trial public id -> AnswerRow, for those of `trial_ids` that belong to the assignment `token` (its row
    locked, on PostgreSQL)."""
    db = _db()
    postgres = db.vendor == "postgresql"
    for_update = db.features.has_select_for_update_of
    sql = answer_sql(db.vendor, 0 if postgres else len(trial_ids), for_update)
    if for_update:  # answer_sql's locking form: the token, then the trials twice (the items' lock, the read)
        params = [token, list(trial_ids), list(trial_ids)]
    else:
        params = [token, list(trial_ids)] if postgres else [token, *trial_ids]
    with HotCursor() as cursor:
        cursor.execute(sql, params)
        found = cursor.fetchall()
    out, decoded = {}, None
    for row in found:
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
            public_id,
        ) = row
        if decoded is None:  # one study: its config decoded once (read as text on PostgreSQL)
            decoded = json.loads(config) if isinstance(config, str) else config
        out[public_id] = AnswerRow(
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
            decoded,
            expected,
            _uuid(j_id),
            j_key,
        )
    return out


def items_lock(item_ids) -> None:
    """Lock these items' rows in id order (PostgreSQL; FOR NO KEY UPDATE, the lock an UPDATE of their counts
    takes). Every transaction that waits for several items takes them so before it writes (the answer read
    locks its test items the same way: answer_sql), so that two such transactions never wait on each other
    in a cycle; an UPDATE ... WHERE id IN (...) alone locks rows in whatever order its plan reads them."""
    ids = sorted(set(item_ids))
    if len(ids) > 1 and _db().vendor == "postgresql":
        table = Item._meta.db_table
        execute(f"SELECT 1 FROM {table} WHERE id = ANY(%s) ORDER BY id FOR NO KEY UPDATE", [ids])


# How a column's value travels in store_answers' JSON document on PostgreSQL, by field type: as JSON has
# it (None: strings, numbers, booleans, null, and a JSONField's object), or through this function first.
JSON_VALUE = {
    "UUIDField": str,
    "DateTimeField": datetime.isoformat,
    "CharField": None,
    "TextField": None,
    "BooleanField": None,
    "FloatField": None,
    "PositiveSmallIntegerField": None,
    "IntegerField": None,
    "JSONField": None,
}


@functools.lru_cache
def json_plan(model) -> tuple[tuple, str]:
    """((attname, column, its JSON_VALUE function) per concrete field, the record type jsonb_to_recordset
    reads them as): PostgreSQL builds `model`'s rows from one JSON parameter. A field type that JSON_VALUE
    does not list is an error here, where a test meets it, not a wrong value later."""
    quote, plan, record = connection.ops.quote_name, [], []
    for field in model._meta.concrete_fields:
        kind = (field.target_field if field.is_relation else field).get_internal_type()
        if kind not in JSON_VALUE:
            raise TypeError(f"{model.__name__}.{field.name}: no JSON form for {kind}")
        plan.append((field.attname, field.column, JSON_VALUE[kind]))
        record.append(f"{quote(field.column)} {LENGTH.sub('', field.db_type(connection))}")
    return tuple(plan), ", ".join(record)


def json_rows(objs) -> str:
    """The JSON document (an array of objects keyed by column) that json_plan's record reads `objs` from."""
    plan, _ = json_plan(type(objs[0]))
    rows = []
    for obj in objs:
        values = obj.__dict__
        rows.append(
            {
                column: value if to_json is None or value is None else to_json(value)
                for attname, column, to_json in plan
                for value in (values[attname],)
            }
        )
    return json.dumps(rows, separators=(",", ":"), allow_nan=False)


@functools.lru_cache
def store_answers_sql(vendor: str, n: int, n_items: int) -> list[str]:
    """The answer path's writes for n answers of one assignment, to n_items test items (built once per
    process; on PostgreSQL n and n_items are 0): the judgments, their trials marked answered, the
    assignment's counts (judgments.tallies) and lease, and the items' counts. On PostgreSQL one statement
    for any n, the writes as data-modifying CTEs (each run exactly once): the judgments come as one JSON
    parameter (json_rows; psycopg dumps a string at C speed, where an array costs it several Python calls
    per element), the trials and items follow from the inserted rows. Elsewhere one statement per write
    and per item."""
    tables = (model._meta.db_table for model in (Judgment, Trial, Assignment, Item))
    judgment, trial, assignment, item = tables
    quote = connection.ops.quote_name
    assignment_write = (
        # The lease moves forward only once less than half of it is left, so that most answers leave every
        # indexed column of the assignment alone (a heap-only update).
        # last_answer_at (unindexed) bounds what heartbeats may extend the lease to.
        f"UPDATE {assignment} SET n_answered = n_answered + %s, "
        + "".join(f"{field} = {field} + %s, " for field in tallies.FIELDS.values())
        + "last_answer_at = %s, lease_expires_at = "
        "CASE WHEN lease_expires_at < %s THEN %s ELSE lease_expires_at END WHERE id = %s"
    )
    if vendor != "postgresql":
        return [
            insert_sql(Judgment, vendor, n),
            f"UPDATE {trial} SET answered = %s WHERE id IN ({', '.join(['%s'] * n)})",
            assignment_write,
        ] + [
            f"UPDATE {item} SET n_judgments = n_judgments + %s, n_open = n_open - %s, n_ones = n_ones + %s "
            "WHERE id = %s"
        ] * n_items
    _, record = json_plan(Judgment)
    columns = ", ".join(quote(f.column) for f in Judgment._meta.concrete_fields)
    writes = [
        f"INSERT INTO {judgment} ({columns}) SELECT {columns} "
        f"FROM jsonb_to_recordset(%s::jsonb) AS r({record}) RETURNING trial_id, item_id, kind, choice",
        f"UPDATE {trial} SET answered = true FROM w0 WHERE {trial}.id = w0.trial_id",
        assignment_write,
        # each test item's lease becomes a judgment: its load (n_judgments + n_open) is unchanged
        f"UPDATE {item} SET n_judgments = n_judgments + v.n, n_open = n_open - v.n, n_ones = n_ones + v.ones "
        f"FROM (SELECT item_id, count(*) AS n, sum(choice) AS ones FROM w0 WHERE kind = 'test' "
        f"GROUP BY item_id) AS v WHERE {item}.id = v.item_id",
    ]
    return ["WITH " + ", ".join(f"w{k} AS ({sql})" for k, sql in enumerate(writes)) + " SELECT 1"]


def store_answers(judgments: list[Judgment], row: AnswerRow, lease_expires_at, renew_before) -> None:
    """Store these new judgments of the assignment `row` describes, as store_answers_sql writes them, in the
    transaction whose answer_rows locked the assignment and the items."""
    db = _db()
    prep = lambda field, value: field.get_db_prep_save(value, db)  # noqa: E731
    pk = lambda model, value: model._meta.pk.get_db_prep_value(value, db)  # noqa: E731
    lease = Assignment._meta.get_field("lease_expires_at")
    added = [0] * len(tallies.FIELDS)
    for judgment in judgments:
        counts = tallies.increments(
            trial_kind=judgment.kind,
            response=judgment.response,
            correct=judgment.correct,
            flagged=judgment.timing_flagged,
        )
        added = [a + b for a, b in zip(added, counts, strict=True)]
    assignment_params = [
        len(judgments),
        *added,
        prep(lease, judgments[0].created_at),
        prep(lease, renew_before),
        prep(lease, lease_expires_at),
        pk(Assignment, row.pk),
    ]
    if db.vendor == "postgresql":  # the items' counts are summed by the statement itself
        statements = store_answers_sql(db.vendor, 0, 0)
        params = [[json_rows(judgments), *assignment_params]]
    else:
        per_item: dict = {}  # item id -> [judgments, ones]
        for judgment in judgments:
            if judgment.kind == Trial.Kind.TEST:
                counted = per_item.setdefault(judgment.item_id, [0, 0])
                counted[0] += 1
                counted[1] += judgment.choice
        statements = store_answers_sql(db.vendor, len(judgments), len(per_item))
        params = [
            insert_params(judgments),
            [True, *(pk(Trial, judgment.trial_id) for judgment in judgments)],
            assignment_params,
        ] + [[count, count, ones, pk(Item, item_id)] for item_id, (count, ones) in sorted(per_item.items())]
    with HotCursor() as cursor:
        for sql, group in zip(statements, params, strict=True):
            cursor.execute(sql, group)
    for judgment in judgments:
        judgment._state.adding = False
        judgment._state.db = db.alias


# --- model rows without the query compiler --------------------------------------------------------------
@functools.lru_cache
def _select_plan(model, fields: tuple | None, vendor: str) -> tuple:
    """(column list, attnames, [(position, converters, column)]) for reading `fields` (attnames; all
    concrete fields when None) of `model`: the converters the query compiler would apply to each column
    (the backend's and the field's: JSON decoded, SQLite's UUIDs and datetimes parsed)."""
    table = model._meta.db_table
    chosen = [f for f in model._meta.concrete_fields if fields is None or f.attname in fields]
    quote = connection.ops.quote_name
    plan = []
    for position, field in enumerate(chosen):
        col = field.get_col(table)
        converters = connection.ops.get_db_converters(col) + col.get_db_converters(connection)
        if converters:
            plan.append((position, tuple(converters), col))
    columns = ", ".join(f"{quote(table)}.{quote(f.column)}" for f in chosen)
    return columns, tuple(f.attname for f in chosen), tuple(plan)


def model_rows(model, where: str, params: list, *, fields: tuple | None = None, tail: str = "") -> list:
    """Instances of `model` (Model.from_db, as a queryset makes them: converters applied, not `adding`)
    from `SELECT <its columns> FROM <its table> WHERE <where> <tail>`, run as a HotCursor statement: what
    the hot annotator paths read, without the query compiler's cost. `fields`: attnames to load (the others
    deferred), None for every concrete field. Params must be prepared for the database (prep)."""
    db = _db()
    columns, names, plan = _select_plan(model, fields, db.vendor)
    with HotCursor() as cursor:
        cursor.execute(f"SELECT {columns} FROM {model._meta.db_table} WHERE {where} {tail}", params)
        rows = cursor.fetchall()
    out = []
    for row in rows:
        if plan:
            row = list(row)
            for position, converters, col in plan:
                for convert in converters:
                    row[position] = convert(row[position], col, db)
        out.append(model.from_db(db.alias, names, row))
    return out


def prep(model, attname: str, value):
    """A value for `model`'s field `attname` in a hand-written statement (UUIDs as SQLite stores them...)."""
    return model._meta.get_field(attname).get_db_prep_value(value, _db(), prepared=False)


def execute(sql_text: str, params: list):
    """Run one hand-written statement; returns the cursor's rows (a list, empty for a write)."""
    with HotCursor() as cursor:
        cursor.execute(sql_text, params)
        return cursor.fetchall() if cursor.cursor.description else []


# --- the start's statements ----------------------------------------------------------------------------
def stale_exists(*, study_id, now) -> bool:
    """Whether the study has a started assignment past its lease (judgments.assignments._expire's probe)."""
    table = Assignment._meta.db_table
    return bool(
        execute(
            f"SELECT 1 FROM {table} WHERE study_id = %s AND status = %s AND lease_expires_at <= %s LIMIT 1",
            [prep(Assignment, "study_id", study_id), "started", prep(Assignment, "lease_expires_at", now)],
        )
    )


def items_open_add(*, item_ids: list, n: int) -> None:
    """n_open += n on these items (rows the caller's transaction has locked), in id order."""
    ids = sorted(item_ids)
    marks = ", ".join(["%s"] * len(ids))
    execute(
        f"UPDATE {Item._meta.db_table} SET n_open = n_open + %s WHERE id IN ({marks})",
        [n, *(prep(Item, "id", pk) for pk in ids)],
    )


@functools.lru_cache
def _attnames(model) -> tuple:
    return tuple(f.attname for f in model._meta.concrete_fields)


def model_new(model, values: dict):
    """An unsaved instance of `model` from every concrete field's value by attname (foreign keys as ids),
    built as Model.from_db builds one, from positional values: the keyword constructor's per-field work
    (defaults, related-object descriptors) is most of its cost on the answer path."""
    return model(*[values[name] for name in _attnames(model)])


def trials_build(*, assignment: Assignment, worker, sequence: list, now) -> list[Trial]:
    """A new assignment's Trial instances (unsaved) for its sequence of (item, kind, swap), each with its
    item attached (the start's response reads it): built from their column values, as Model.from_db does,
    without the keyword constructor's per-field cost."""
    trials = []
    for position, (item, kind, swap) in enumerate(sequence):
        values = {
            "id": uuid.uuid4(),
            "created_at": now,
            "updated_at": now,
            "assignment_id": assignment.pk,
            "worker_id": worker.pk,
            "item_id": item.pk,
            "position": position,
            "kind": kind,
            "swap": swap,
            "public_id": new_token(),
            "answered": False,
        }
        trial = model_new(Trial, values)
        trial._state.fields_cache.update(item=item, assignment=assignment, worker=worker)
        trials.append(trial)
    return trials


def model_get(model, pk):
    """`model`'s row with this primary key (model_rows), or None."""
    found = model_rows(model, f"{model._meta.pk.column} = %s", [model._meta.pk.get_db_prep_value(pk, _db())])
    return found[0] if found else None


def loaded(model, attname: str, value):
    """A value read by a hand-written statement, as the field holds it (SQLite's UUID strings parsed)."""
    field = model._meta.get_field(attname)
    return field.to_python(value) if isinstance(value, str) else value


def items_count_down(*, item_ids: list, column: str) -> None:
    """column -= 1 on these items where it is above 0 (an excluded or rejected HIT's votes taken back)."""
    if not item_ids:
        return
    if column not in ("n_judgments", "n_ones"):
        raise ValueError(f"not a count column: {column}")
    marks = ", ".join(["%s"] * len(item_ids))
    execute(
        f"UPDATE {Item._meta.db_table} SET {column} = {column} - 1 WHERE id IN ({marks}) AND {column} > 0",
        [prep(Item, "id", pk) for pk in item_ids],
    )


def update_fields(obj, attnames: list) -> None:
    """UPDATE these columns of obj's row to obj's values, prepared by their fields: what
    obj.save(update_fields=...) writes, updated_at included when listed (set it on obj first)."""
    model, db = type(obj), _db()
    fields = [model._meta.get_field(name) for name in attnames]
    sets = ", ".join(f"{connection.ops.quote_name(f.column)} = %s" for f in fields)
    execute(
        f"UPDATE {model._meta.db_table} SET {sets} WHERE {model._meta.pk.column} = %s",
        [f.get_db_prep_save(getattr(obj, f.attname), db) for f in fields] + [prep(model, "id", obj.pk)],
    )
