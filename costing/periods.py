"""Closing a month: its chargeback is stored verbatim and never computed again.

Events that reach the ledger later for a closed month are billed in the next open month as
adjustments. Closing holds the ledger's period lock (ledger.lock_periods) while it snapshots
the month and marks it closed, and writers assign charge periods under the same lock, so an
event the proxy writes while a month is being closed is in the snapshot or an adjustment.
"""

from __future__ import annotations

from datetime import datetime

import orjson
import sqlalchemy as sa

from .chargeback import Chargeback, compute, line_sums, snapshot
from .config import Settings
from .errors import PeriodClosed
from .period_lock import lock_periods
from .tables import PeriodSnapshot, utcnow


def close_period(engine: sa.Engine, settings: Settings, period: str, *, now: datetime | None = None) -> Chargeback:
    """Freeze `period`'s chargeback as it is now. Raises PeriodClosed if it already is."""
    done = snapshot(engine, period)
    if done is not None:
        raise PeriodClosed(f"{period} is already closed (since {done.closed_at:%Y-%m-%d %H:%M} UTC); its chargeback is final")
    with engine.begin() as conn:
        if period in lock_periods(conn, exclusive=True):
            raise PeriodClosed(f"{period} was closed by someone else just now")
        cb = compute(line_sums(conn, period), settings, period)
        row = PeriodSnapshot(period=period, closed_at=now or utcnow(), snapshot=orjson.dumps(cb.as_dict()).decode())
        conn.execute(sa.insert(PeriodSnapshot.__table__).values(**row.model_dump()))
    cb.closed_at = row.closed_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    return cb


def is_closed(engine: sa.Engine, period: str) -> bool:
    return snapshot(engine, period) is not None


__all__ = ["close_period", "is_closed"]
