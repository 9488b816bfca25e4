"""Writing events: each call once, its hourly rollup and its parent link in the same transaction.

Writes are idempotent: a batch replayed after a crash inserts each call once, and only the
rows actually inserted feed the rollups. A batch the ledger refuses for what its rows hold
raises LedgerWriteError (writing it again cannot help; its rows one by one find the culprit);
any other error means the database could not be reached, and the same batch can be retried.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from datetime import datetime
from operator import iadd, itemgetter
from typing import Any

import sqlalchemy as sa

from .bulk_insert import postgres_insert, sqlite_insert
from .errors import LedgerWriteError
from .pacing import in_slices
from .parents import link_parents
from .period_lock import lock_periods
from .run_ledger import link_runs
from .tables import EVENTS, ROLLUP_DIMS, ROLLUP_SUMS, ROLLUPS, TOKEN_FIELDS

ROLLUP_MAX = 10**18
"""Each rollup sum saturates here: a bucket of absurd calls must not overflow (bigint, int64)
and fail every later event of its hour. Far above any real hour of one team's spend ($1M)."""


# What writing a row can raise; _refused_for_content tells those about what the rows hold apart
# from trouble reaching the database. (SQLite batches go straight through the driver, whose
# errors SQLAlchemy does not wrap; a row missing a field or holding a wrong type fails in our
# own code before any driver sees it.)
_WRITE_ERRORS = (sa.exc.StatementError, sqlite3.Error, OverflowError, ValueError, TypeError, KeyError)

Periods = Callable[[datetime, set[str]], tuple[str, bool]]


def write_events(
    engine: sa.Engine, rows: Iterable[dict[str, Any]], *, periods: Periods | None = None, pace: Callable[[], None] | None = None
) -> int:
    """Insert events once each and add the new ones to the rollups, in one transaction.

    Returns how many were new. Safe to call again with the same rows. With `periods`, each
    row's `charge_period` and `adjustment` are set inside the transaction from the months
    closed at that moment (see lock_periods). With `pace` (pacing.Pace), called between the
    steps of a write to SQLite, a live flush's CPU is spread out. Raises LedgerWriteError, with
    nothing written, when the ledger refuses what the rows hold; errors reaching the database
    as they are.
    """
    # One row per call id, the first: a batch can hold a call twice (a broker's redelivery, a
    # publish retried past its duplicate window), and the insert below skips the second copy
    # while the rollups would have counted both.
    rows = _first_of_each(rows)
    if not rows:
        return 0
    try:
        return _write(engine, rows, periods, pace)
    except _WRITE_ERRORS as e:
        if not _refused_for_content(e):
            raise
        first = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise LedgerWriteError(first, rows=len(rows)) from e


def _first_of_each(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows in their order, a call id's later copies left out."""
    seen: set[Any] = set()
    out = []
    for r in rows:
        if r.get("call_id") not in seen:
            seen.add(r.get("call_id"))
            out.append(r)
    return out


def _refused_for_content(e: BaseException) -> bool:
    """True when retrying cannot help: the database (or the driver) refuses what a row holds."""
    if isinstance(e, sa.exc.DBAPIError):
        return isinstance(e, sa.exc.DataError | sa.exc.IntegrityError)
    if isinstance(e, sqlite3.Error):
        return isinstance(e, sqlite3.DataError | sqlite3.IntegrityError)
    return True


def _write(engine: sa.Engine, rows: list[dict[str, Any]], periods: Periods | None, pace: Callable[[], None] | None) -> int:
    table = EVENTS
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # PostgreSQL does a write's work on its own host; pauses here would only hold the
            # rollups' row locks longer against other replicas' writers.
            pace = None
            # Every statement below is a keyed lookup. With statistics from when the ledger was
            # small (autovacuum off or behind, a big spool replayed), the planner chose to scan
            # all events for each batch's parent links: ingest slowed with the ledger's size.
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        if periods is not None:
            closed = lock_periods(conn, exclusive=False)
            for r in rows:
                r["charge_period"], r["adjustment"] = periods(r["ts"], closed)
        if conn.dialect.name == "sqlite":
            inserted = set(sqlite_insert(conn, table, rows, 'ON CONFLICT ("call_id") DO NOTHING RETURNING "call_id"', pace))
        else:
            inserted = set(postgres_insert(conn, table, rows, 'ON CONFLICT ("call_id") DO NOTHING RETURNING "call_id"'))
        new = [r for r in rows if r["call_id"] in inserted]
        _add_to_rollups(engine, conn, new, pace)
        link_runs(conn, new)  # first: it moves calls into the traces their parents are in
        if pace is not None:
            pace()
        link_parents(conn, new)
        if pace is not None:
            pace()  # the commit's own work comes next, in one piece
    return len(new)


# A row's dimensions and tokens in one C call each: this runs for every event written.
_DIMS = itemgetter(*ROLLUP_DIMS[1:])
_TOKENS = itemgetter(*TOKEN_FIELDS)


def _add_to_rollups(engine: sa.Engine, conn: sa.Connection, rows: list[dict[str, Any]], pace: Callable[[], None] | None) -> None:
    sums: dict[tuple[Any, ...], list[int]] = {}
    for r in in_slices(rows, pace):
        dims = (r["ts"].replace(minute=0, second=0, microsecond=0), *_DIMS(r))
        acc = sums.get(dims)
        if acc is None:
            acc = sums[dims] = [0] * len(ROLLUP_SUMS)
        tool_call = 1 if r["kind"] == "mcp" and r["method"] == "tools/call" else 0
        acc[:] = map(iadd, acc, (1, *_TOKENS(r), tool_call, r["cost_pico"]))  # `+=`, its results and errors
    if not sums:
        return
    if pace is not None:
        pace()
    table = ROLLUPS
    values = [
        dict(zip(ROLLUP_DIMS, dims, strict=True)) | {s: min(v, ROLLUP_MAX) for s, v in zip(ROLLUP_SUMS, acc, strict=True)}
        for dims, acc in sums.items()
    ]
    keys = ", ".join(f'"{d}"' for d in ROLLUP_DIMS)
    # Saturating, and written so that nothing is computed past the cap: an overflowing
    # `a + b` is an error on PostgreSQL and a float on SQLite.
    adds = ", ".join(
        f'"{s}" = CASE WHEN "{table.name}"."{s}" > {ROLLUP_MAX} - excluded."{s}" THEN {ROLLUP_MAX} '
        f'ELSE "{table.name}"."{s}" + excluded."{s}" END'
        for s in ROLLUP_SUMS
    )
    tail = f"ON CONFLICT ({keys}) DO UPDATE SET {adds}"
    if conn.dialect.name == "sqlite":  # one writer at a time: no order needed
        for _ in sqlite_insert(conn, table, values, tail):
            pass
        return
    # A fixed order keeps concurrent replicas from deadlocking on the same rollup rows.
    values.sort(key=lambda v: tuple(str(v[d]) for d in ROLLUP_DIMS))
    postgres_insert(conn, table, values, tail)


__all__ = ["write_events"]
