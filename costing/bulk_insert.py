"""Multi-row INSERTs straight through the database driver, one writer per dialect.

The ledger writes many small batches, on a thread that shares the GIL with the proxy's event
loop; SQLAlchemy's per-row work was most of a batch's time on both dialects (bench/RESULTS.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from itertools import chain
from operator import itemgetter
from typing import Any

import sqlalchemy as sa


def sqlite_insert(
    conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]], tail: str, pace: Callable[[], None] | None = None
) -> Iterable[Any]:
    """Multi-row INSERTs straight through the driver, in the connection's transaction.

    With `pace` (pacing.Pace), the rows go in statements of at most 16, `pace` called after each.

    SQLAlchemy's per-row parameter processing cost about three quarters of a batch's time
    (bench/RESULTS.md), and on the proxy it runs on a thread that shares the GIL with the
    event loop. A plain DateTime column is bound as SQLAlchemy would store it (naive UTC text
    with microseconds, the SQLite dialect's format), booleans as 0/1. The ledger's own time
    columns (`ts`, `hour`) are UTCDateTime, a TypeDecorator: they reach the driver as aware
    datetimes, which sqlite3 stores as ISO text with its offset (`...+00:00`), as every ledger
    written so far holds them. Changing that would split an hour's rollup into two rows; the
    readers that compare these columns in SQL allow for it (credit_ledger.SLACK).
    """
    cols = [c for c in rows[0] if c in table.c]
    dates = [i for i, c in enumerate(cols) if isinstance(table.c[c].type, sa.DateTime)]
    names = ", ".join(f'"{c}"' for c in cols)
    one = "(" + ", ".join("?" * len(cols)) + ")"
    # A row's values in one C call, not a Python step per value: this runs for every column of
    # every event written.
    values: Callable[[dict[str, Any]], Sequence[Any]] = itemgetter(*cols) if len(cols) > 1 else lambda r: (r[cols[0]],)
    if dates:
        values = _naive_at(values, dates)
    cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        for chunk in _sized_chunks(rows, 256 if pace is None else 16):
            params = list(chain.from_iterable(map(values, chunk)))
            sql = f'INSERT INTO "{table.name}" ({names}) VALUES {", ".join([one] * len(chunk))} {tail}'
            yield from map(itemgetter(0), cur.execute(sql, params))
            if pace is not None:
                pace()
    finally:
        cur.close()


def postgres_insert(conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]], tail: str) -> list[Any]:
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


def _sized_chunks(rows: list[Any], largest: int = 256) -> Iterable[list[Any]]:
    """Chunks of 256, 64, 16, 4 or 1 rows (none over `largest`): a handful of statement shapes,
    so the driver's statement cache holds a few prepared INSERTs instead of up to 128 large
    ones, one per batch size, which grew the proxy's memory by tens of MB under load."""
    i = 0
    for size in (256, 64, 16, 4, 1):
        if size > largest:
            continue
        while len(rows) - i >= size:
            yield rows[i : i + size]
            i += size


def _naive_at(values: Callable[[dict[str, Any]], Sequence[Any]], dates: list[int]) -> Callable[[dict[str, Any]], Sequence[Any]]:
    def dated(r: dict[str, Any]) -> Sequence[Any]:
        out = list(values(r))
        for i in dates:
            out[i] = _naive(out[i])
        return out

    return dated


def _naive(ts: datetime | None) -> str | None:
    if ts is None:
        return None
    if ts.tzinfo is not None:
        ts = ts.astimezone(UTC).replace(tzinfo=None)
    return ts.isoformat(" ", "microseconds")


__all__ = ["postgres_insert", "sqlite_insert"]
