"""Reads of the ledger that several reports share. Reports never write."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import sqlalchemy as sa

from meterline.costing import ROLLUP_SUMS, Event, Rollup

# The tables the reports read. SQLModel's metaclass sets `__table__`, which type checkers cannot see.
EVENTS: sa.Table = Event.__table__  # type: ignore[attr-defined]
ROLLUPS: sa.Table = Rollup.__table__  # type: ignore[attr-defined]


def rollup_sums(
    engine: sa.Engine,
    period: str,
    by: Sequence[str],
    where: dict[str, Any] | None = None,
    *,
    tags: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Rollup sums for a billing month, grouped by `by` (integers; money in pico-dollars).

    `where`: column -> value (or a list of values); `tags`: `k=v` pairs the rows' tags must
    all carry. Group by `hour` for time series (the rollups are hourly)."""
    t = ROLLUPS
    cols = [t.c[d] for d in by]
    q = sa.select(*cols, *(sa.func.sum(t.c[s]).label(s) for s in ROLLUP_SUMS)).where(t.c.charge_period == period)
    for k, v in (where or {}).items():
        q = q.where(t.c[k].in_(v) if isinstance(v, list | tuple | set) else t.c[k] == v)
    for pair in tags:
        q = q.where(has_tag(t.c.tags, pair))
    q = q.group_by(*cols).order_by(*cols)
    with engine.connect() as conn:
        return _rows(conn.execute(q), by)


def has_tag(column: Any, pair: str) -> Any:
    """SQL: the `k=v,k2=v2` string in `column` holds `pair` as one whole item."""
    esc = pair.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return sa.or_(
        column == pair,
        column.like(f"{esc},%", escape="\\"),
        column.like(f"%,{esc}", escape="\\"),
        column.like(f"%,{esc},%", escape="\\"),
    )


def distinct_values(
    engine: sa.Engine, period: str, columns: Sequence[str], where: dict[str, Any] | None = None
) -> dict[str, list[str]]:
    """The values each rollup column takes in a month (for filter pickers), in one read."""
    t = ROLLUPS
    cols = [t.c[c] for c in columns]
    q = sa.select(*cols).where(t.c.charge_period == period).group_by(*cols)
    for k, v in (where or {}).items():
        q = q.where(t.c[k] == v)
    seen: dict[str, set[str]] = {c: set() for c in columns}
    with engine.connect() as conn:
        for row in conn.execute(q):
            for c, v in zip(columns, row, strict=True):
                seen[c].add(str(v))
    return {c: sorted(v) for c, v in seen.items()}


def periods_with_usage(engine: sa.Engine) -> list[str]:
    """Billing months with any rollup, newest first."""
    t = ROLLUPS
    with engine.connect() as conn:
        return sorted((r[0] for r in conn.execute(sa.select(t.c.charge_period).distinct())), reverse=True)


def _rows(result: Iterable[Any], by: Sequence[str]) -> list[dict[str, Any]]:
    out = []
    for r in result:
        row = {d: r[i] for i, d in enumerate(by)}
        for j, s in enumerate(ROLLUP_SUMS):
            row[s] = int(r[len(by) + j] or 0)
        out.append(row)
    return out


def key_spend(engine: sa.Engine, period: str, key_ids: Sequence[str]) -> dict[str, int]:
    """Pico-dollars per key in a billing month (keys are not in the rollups: read events)."""
    t = EVENTS
    q = (
        sa.select(t.c.key_id, sa.func.sum(t.c.cost_pico))
        .where(t.c.charge_period == period, t.c.key_id.in_(list(key_ids)))
        .group_by(t.c.key_id)
    )
    with engine.connect() as conn:
        return {k: int(v or 0) for k, v in conn.execute(q)}


def events(engine: sa.Engine, period: str, batch: int = 5000) -> Iterator[dict[str, Any]]:
    """Every event billed in `period`, oldest first, streamed in batches."""
    t = EVENTS
    q = sa.select(t).where(t.c.charge_period == period).order_by(t.c.ts, t.c.call_id)
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=batch).execute(q)
        for row in result.mappings():
            yield dict(row)
