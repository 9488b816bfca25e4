"""Reads of the ledger that several reports share. Reports never write."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import sqlalchemy as sa

from costing import ROLLUP_SUMS, Event, Rollup


def rollup_sums(
    engine: sa.Engine, period: str, by: Sequence[str], where: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Rollup sums for a billing month, grouped by `by` (integers; money in pico-dollars)."""
    t = Rollup.__table__
    cols = [t.c[d] for d in by]
    q = sa.select(*cols, *(sa.func.sum(t.c[s]).label(s) for s in ROLLUP_SUMS)).where(t.c.charge_period == period)
    for k, v in (where or {}).items():
        q = q.where(t.c[k].in_(v) if isinstance(v, list | tuple | set) else t.c[k] == v)
    q = q.group_by(*cols).order_by(*cols)
    with engine.connect() as conn:
        return _rows(conn.execute(q), by)


def _rows(result: Iterable[Any], by: Sequence[str]) -> list[dict[str, Any]]:
    out = []
    for r in result:
        row = {d: r[i] for i, d in enumerate(by)}
        for j, s in enumerate(ROLLUP_SUMS):
            row[s] = int(r[len(by) + j] or 0)
        out.append(row)
    return out


def events(engine: sa.Engine, period: str, batch: int = 5000) -> Iterator[dict[str, Any]]:
    """Every event billed in `period`, oldest first, streamed in batches."""
    t = Event.__table__
    q = sa.select(t).where(t.c.charge_period == period).order_by(t.c.ts, t.c.call_id)
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=batch).execute(q)
        for row in result.mappings():
            yield dict(row)
