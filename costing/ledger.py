"""The ledger: one row per metered call, hourly rollups kept as rows are written, keys, periods.

Money is stored as integer pico-dollars (`cost_pico`, see money.py): exact on SQLite and
PostgreSQL alike. Writes are idempotent: a batch replayed after a crash inserts each call once,
and only the rows actually inserted feed the rollups.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Field, SQLModel

EVENT_COLUMNS = (
    "call_id ts kind status department team project user key_id provider model tool "
    "input_tokens cached_input_tokens output_tokens reasoning_tokens cost_usd usage_source "
    "trace_id parent_call_id"
).split()
"""The contract's events export columns, in order (`cost_usd` is derived from `cost_pico`)."""

TOKEN_FIELDS = (
    "input_tokens",
    "cached_input_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cache_write_tokens",
)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Event(SQLModel, table=True):
    __tablename__ = "events"
    __table_args__ = (
        sa.Index("ix_events_period", "charge_period", "department", "team"),
        sa.Index("ix_events_ts", "ts"),
        sa.Index("ix_events_trace", "trace_id"),
        sa.Index("ix_events_parent_span", "parent_span_id"),
    )

    call_id: str = Field(primary_key=True, max_length=32)
    ts: datetime  # UTC
    charge_period: str = Field(max_length=7)  # YYYY-MM it is billed in (late events: next open)
    adjustment: bool = False  # billed in a later month than it happened, its own was closed
    kind: str = Field(max_length=16)  # llm | embedding | mcp
    status: str = Field(max_length=16)  # ok | upstream_error | client_closed | rejected | tool_error | protocol_error
    department: str = Field("", max_length=128)  # who is charged
    team: str = Field("", max_length=128)
    cost_center: str = Field("", max_length=128)
    key_team: str = Field("", max_length=128)  # the key's own team
    project: str = Field("", max_length=256)
    user: str = Field("", max_length=256)
    key_id: str = Field("", max_length=64)
    provider: str = Field("", max_length=128)
    model: str = Field("", max_length=256)
    tool: str = Field("", max_length=256)
    method: str = Field("", max_length=128)  # MCP method, or the LLM route
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    cache_write_tokens: int = 0
    cost_pico: int = Field(0, sa_type=sa.BigInteger)
    priced: bool = True
    price_version: str = Field("", max_length=256)
    usage_source: str = Field("reported", max_length=16)
    trace_id: str = Field("", max_length=32)
    parent_span_id: str = Field("", max_length=16)
    parent_call_id: str = Field("", max_length=32)
    tags: str = Field("", max_length=1024)  # k=v,k2=v2 as sent
    http_status: int = 0
    latency_ms: int = 0
    request_bytes: int = Field(0, sa_type=sa.BigInteger)
    response_bytes: int = Field(0, sa_type=sa.BigInteger)
    error: str = Field("", max_length=512)


ROLLUP_DIMS = (
    "hour charge_period adjustment department team cost_center key_team project user kind "
    "provider model tool status usage_source priced tags"
).split()
ROLLUP_SUMS = ("requests", *TOKEN_FIELDS, "tool_calls", "cost_pico")


class Rollup(SQLModel, table=True):
    """Hourly sums per who, what and how; reports read these, not raw events."""

    __tablename__ = "rollups_hourly"
    __table_args__ = (
        sa.UniqueConstraint(*ROLLUP_DIMS, name="uq_rollups_dims"),
        sa.Index("ix_rollups_period", "charge_period"),
    )

    id: int | None = Field(default=None, primary_key=True)
    hour: datetime
    charge_period: str = Field(max_length=7)
    adjustment: bool = False
    department: str = ""
    team: str = ""
    cost_center: str = ""
    key_team: str = ""
    project: str = ""
    user: str = ""
    kind: str = ""
    provider: str = ""
    model: str = ""
    tool: str = ""
    status: str = ""
    usage_source: str = ""
    priced: bool = True
    tags: str = ""  # as sent (k=v,...): chargeback lines and FOCUS Tags are split by them
    requests: int = Field(0, sa_type=sa.BigInteger)
    input_tokens: int = Field(0, sa_type=sa.BigInteger)
    cached_input_tokens: int = Field(0, sa_type=sa.BigInteger)
    output_tokens: int = Field(0, sa_type=sa.BigInteger)
    reasoning_tokens: int = Field(0, sa_type=sa.BigInteger)
    cache_write_tokens: int = Field(0, sa_type=sa.BigInteger)
    tool_calls: int = Field(0, sa_type=sa.BigInteger)
    cost_pico: int = Field(0, sa_type=sa.BigInteger)


class VirtualKey(SQLModel, table=True):
    __tablename__ = "keys"

    id: str = Field(primary_key=True, max_length=32)
    prefix: str = Field(max_length=16)  # shown in listings; never enough to use the key
    key_hash: str = Field(max_length=64, unique=True)  # sha256 of the secret
    name: str = ""
    team: str = Field(max_length=128)
    project: str = ""
    models: str = ""  # comma-separated names or globs this key may use; empty = all
    created_at: datetime = Field(default_factory=utcnow)
    revoked_at: datetime | None = None
    updated_at: datetime = Field(default_factory=utcnow, index=True)
    expires_at: datetime | None = None  # refused from then on (401, the message says so)
    budget_pico: int | None = Field(None, sa_type=sa.BigInteger)  # monthly budget of its own
    # Rotation: the secret it replaced, accepted until `previous_valid_until` (the grace).
    previous_hash: str | None = Field(None, max_length=64, index=True)
    previous_valid_until: datetime | None = None


class PeriodSnapshot(SQLModel, table=True):
    """A closed month: the chargeback as it was billed, kept verbatim."""

    __tablename__ = "periods"

    period: str = Field(primary_key=True, max_length=7)
    closed_at: datetime = Field(default_factory=utcnow)
    snapshot: str = Field(sa_type=sa.Text)  # JSON lines of the chargeback, exact decimals


class Note(SQLModel, table=True):
    """Things the ledger should remember besides calls: budget alerts, price warnings."""

    __tablename__ = "notes"
    __table_args__ = (sa.UniqueConstraint("kind", "subject", "period", name="uq_notes_once"),)

    id: int | None = Field(default=None, primary_key=True)
    ts: datetime = Field(default_factory=utcnow)
    kind: str = Field(max_length=32)  # budget_soft | budget_hard | unpriced_model
    subject: str = Field(max_length=256)
    period: str = Field(max_length=7)
    message: str = ""


class BudgetLease(SQLModel, table=True):
    """How much of a budget one proxy replica may spend beyond the ledger (costing/budget_leases.py)."""

    __tablename__ = "budget_leases"

    scope: str = Field(primary_key=True, max_length=200)  # "team:nlp", "department:research", "key:key_..."
    period: str = Field(primary_key=True, max_length=7)
    replica: str = Field(primary_key=True, max_length=32)
    committed_pico: int = Field(0, sa_type=sa.BigInteger)  # its unlanded spend may not pass this
    heartbeat_at: datetime = Field(default_factory=utcnow)  # renewed every budgets.refresh_seconds


def create_engine(url: str) -> sa.Engine:
    """An engine for the ledger URL, tuned for many small batched writes."""
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(conn: Any, _: Any) -> None:
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    # A database that went away must fail fast rather than hang the ledger writer or a key
    # refresh for minutes: the proxy serves from its spool meanwhile (libpq connection options).
    libpq = {"connect_timeout": 5, "keepalives_idle": 15, "keepalives_interval": 5, "keepalives_count": 3}
    return sa.create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5, connect_args=libpq)


def create_schema(engine: sa.Engine) -> None:
    """Create the ledger, or bring an existing one to the current schema in place.

    Through the Alembic revisions in costing/migrations/ (see costing/migrate.py): a change to
    the tables above needs a revision, and tests/costing/test_migrate.py fails until it has one.
    """
    if _at_newest_revision(engine):
        return  # every start-up: Alembic (with Mako and Pygments, ~10 MB resident) stays unloaded
    from .migrate import upgrade

    upgrade(engine)


def newest_revision() -> str:
    """The newest revision on disk, by file name: revisions are numbered `NNNN_what.py`
    (costing/migrate.py's new_revision); tests/costing/test_migrate.py holds Alembic to it."""
    versions = Path(__file__).with_name("migrations") / "versions"
    return max(p.name[:4] for p in versions.glob("[0-9][0-9][0-9][0-9]_*.py"))


def _at_newest_revision(engine: sa.Engine) -> bool:
    try:
        with engine.connect() as conn:
            rev = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
            return rev == newest_revision() and sa.inspect(conn).has_table("events")
    except sa.exc.DBAPIError:
        return False  # no version table yet (or no database): let Alembic say


def _insert(engine: sa.Engine, table: sa.Table) -> Any:
    return (postgresql if engine.dialect.name == "postgresql" else sqlite).insert(table)


PERIOD_LOCK = 0x6D6C_7065  # PostgreSQL advisory lock: closing a month vs writing events


def lock_periods(conn: sa.Connection, *, exclusive: bool) -> set[str]:
    """Serialize closing a month with writing events, for this transaction; the closed months.

    Writers hold the lock shared while they assign charge periods and insert; closing a month
    holds it exclusively while it snapshots the month and marks it closed. So an event is
    either in a closed month's snapshot or billed later as an adjustment, never in between.
    SQLite has one writer at a time: a write that changes nothing takes that lock.
    """
    if conn.dialect.name == "postgresql":
        fn = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
        conn.execute(sa.text(f"SELECT {fn}(:k)"), {"k": PERIOD_LOCK})
    else:
        conn.execute(sa.text("DELETE FROM periods WHERE 1 = 0"))
    return set(conn.execute(sa.select(PeriodSnapshot.__table__.c.period)).scalars())


def write_events(
    engine: sa.Engine,
    rows: Iterable[dict[str, Any]],
    *,
    periods: Callable[[datetime, set[str]], tuple[str, bool]] | None = None,
) -> int:
    """Insert events once each and add the new ones to the rollups, in one transaction.

    Returns how many were new. Safe to call again with the same rows. With `periods`, each
    row's `charge_period` and `adjustment` are set inside the transaction from the months
    closed at that moment (see lock_periods).
    """
    rows = list(rows)
    if not rows:
        return 0
    table = Event.__table__
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Every statement below is a keyed lookup. With statistics from when the ledger was
            # small (autovacuum off or behind, a big spool replayed), the planner chose to scan
            # all events for each batch's parent links: ingest slowed with the ledger's size.
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        if periods is not None:
            closed = lock_periods(conn, exclusive=False)
            for r in rows:
                r["charge_period"], r["adjustment"] = periods(r["ts"], closed)
        if conn.dialect.name == "sqlite":
            inserted = set(_sqlite_insert(conn, table, rows, 'ON CONFLICT ("call_id") DO NOTHING RETURNING "call_id"'))
        else:
            inserted = set(_postgres_insert(conn, table, rows, 'ON CONFLICT ("call_id") DO NOTHING RETURNING "call_id"'))
        new = [r for r in rows if r["call_id"] in inserted]
        _add_to_rollups(engine, conn, new)
        _link_parents(conn, new)
    return len(new)


def _add_to_rollups(engine: sa.Engine, conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
    sums: dict[tuple[Any, ...], list[int]] = {}
    for r in rows:
        dims = (r["ts"].replace(minute=0, second=0, microsecond=0),) + tuple(r[d] for d in ROLLUP_DIMS[1:])
        acc = sums.setdefault(dims, [0] * len(ROLLUP_SUMS))
        acc[0] += 1
        for i, f in enumerate(TOKEN_FIELDS, start=1):
            acc[i] += r[f]
        acc[-2] += 1 if r["kind"] == "mcp" and r["method"] == "tools/call" else 0
        acc[-1] += r["cost_pico"]
    if not sums:
        return
    table = Rollup.__table__
    values = [dict(zip(ROLLUP_DIMS, dims, strict=True)) | dict(zip(ROLLUP_SUMS, acc, strict=True)) for dims, acc in sums.items()]
    keys = ", ".join(f'"{d}"' for d in ROLLUP_DIMS)
    adds = ", ".join(f'"{s}" = "{table.name}"."{s}" + excluded."{s}"' for s in ROLLUP_SUMS)
    tail = f"ON CONFLICT ({keys}) DO UPDATE SET {adds}"
    if conn.dialect.name == "sqlite":  # one writer at a time: no order needed
        for _ in _sqlite_insert(conn, table, values, tail):
            pass
        return
    # A fixed order keeps concurrent replicas from deadlocking on the same rollup rows.
    values.sort(key=lambda v: tuple(str(v[d]) for d in ROLLUP_DIMS))
    _postgres_insert(conn, table, values, tail)


def _sqlite_insert(conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]], tail: str) -> Iterable[Any]:
    """Multi-row INSERTs straight through the driver, in the connection's transaction.

    SQLAlchemy's per-row parameter processing cost about three quarters of a batch's time
    (bench/RESULTS.md), and on the proxy it runs on a thread that shares the GIL with the
    event loop. Values are bound as SQLAlchemy would store them: datetimes as naive UTC text
    with microseconds (the SQLite dialect's storage format), booleans as 0/1.
    """
    cols = [c for c in rows[0] if c in table.c]
    dates = {i for i, c in enumerate(cols) if isinstance(table.c[c].type, sa.DateTime)}
    names = ", ".join(f'"{c}"' for c in cols)
    one = "(" + ", ".join("?" * len(cols)) + ")"
    cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        for chunk in _sized_chunks(rows):
            params: list[Any] = []
            for r in chunk:
                params.extend(_naive(r[c]) if i in dates else r[c] for i, c in enumerate(cols))
            sql = f'INSERT INTO "{table.name}" ({names}) VALUES {", ".join([one] * len(chunk))} {tail}'
            yield from (row[0] for row in cur.execute(sql, params))
    finally:
        cur.close()


def _postgres_insert(conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]], tail: str) -> list[Any]:
    """One prepared single-row INSERT run for every row by psycopg's pipelined executemany,
    in the connection's transaction; the first RETURNING column of each row, if asked for.

    SQLAlchemy's insertmanyvalues renders a batch as one statement with a placeholder per
    value, which psycopg re-parses on every batch: most of a batch's time, and three to
    seven times fewer events/s than this (bench/ingest.py). Driver errors are raised as
    SQLAlchemy's, as they would be through `conn.execute`.
    """
    cols = [c for c in rows[0] if c in table.c]
    names = ", ".join(f'"{c}"' for c in cols)
    sql = f'INSERT INTO "{table.name}" ({names}) VALUES ({", ".join(["%s"] * len(cols))}) {tail}'
    returning = " RETURNING " in f" {tail} "
    dbapi = conn.dialect.loaded_dbapi
    cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cur.executemany(sql, [[r[c] for c in cols] for r in rows], returning=returning)
        out: list[Any] = []
        while returning:
            out.extend(row[0] for row in cur.fetchall())
            if not cur.nextset():
                break
        return out
    except dbapi.Error as e:
        raise sa.exc.DBAPIError.instance(sql, None, e, dbapi.Error) from e
    finally:
        cur.close()


def _sized_chunks(rows: list[Any]) -> Iterable[list[Any]]:
    """Chunks of 256, 64, 16, 4 or 1 rows: a handful of statement shapes, so the driver's
    statement cache holds a few prepared INSERTs instead of up to 128 large ones, one per
    batch size, which grew the proxy's memory by tens of MB under load."""
    i = 0
    for size in (256, 64, 16, 4, 1):
        while len(rows) - i >= size:
            yield rows[i : i + size]
            i += size


def _naive(ts: datetime | None) -> str | None:
    if ts is None:
        return None
    if ts.tzinfo is not None:
        ts = ts.astimezone(UTC).replace(tzinfo=None)
    return ts.isoformat(" ", "microseconds")


def _link_parents(conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
    """Tie calls to parents recorded elsewhere (another replica, or a parent that ended later).

    A call's id is its span id, so a child's `parent_span_id` names its parent once that
    parent is in the ledger.
    """
    t = Event.__table__
    p = t.alias("p")
    found = sa.select(p.c.call_id).where(p.c.call_id == t.c.parent_span_id).scalar_subquery()
    orphans = [r["call_id"] for r in rows if r["parent_span_id"] and not r["parent_call_id"]]
    for chunk in _chunks(orphans, 500):
        conn.execute(
            sa.update(t).where(t.c.call_id.in_(chunk)).values(parent_call_id=sa.func.coalesce(found, ""))
        )
    for chunk in _chunks([r["call_id"] for r in rows], 500):
        conn.execute(
            sa.update(t)
            .where(t.c.parent_call_id == "", t.c.parent_span_id.in_(chunk))
            .values(parent_call_id=t.c.parent_span_id)
        )


def _chunks(items: list[Any], n: int) -> Iterable[list[Any]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]
