"""Closing a month: its chargeback is stored verbatim and never computed again.

Events that reach the ledger later for a closed month are billed in the next open month as
adjustments (see ingest.charge_period). An event the ledger writer commits while a month is
being closed (a window of about one flush interval) can still land in the closed month; the
writer re-reads the closed months before every batch, so the window does not grow.
"""

from __future__ import annotations

from datetime import datetime

import orjson
import sqlalchemy as sa

from .chargeback import Chargeback, compute, line_sums, snapshot
from .config import Settings
from .errors import PeriodClosed
from .ledger import PeriodSnapshot, utcnow


def close_period(engine: sa.Engine, settings: Settings, period: str, *, now: datetime | None = None) -> Chargeback:
    """Freeze `period`'s chargeback as it is now. Raises PeriodClosed if it already is."""
    done = snapshot(engine, period)
    if done is not None:
        raise PeriodClosed(f"{period} is already closed (since {done.closed_at:%Y-%m-%d %H:%M} UTC); its chargeback is final")
    cb = compute(line_sums(engine, period), settings, period)
    row = PeriodSnapshot(period=period, closed_at=now or utcnow(), snapshot=orjson.dumps(cb.as_dict()).decode())
    try:
        with engine.begin() as conn:
            conn.execute(sa.insert(PeriodSnapshot.__table__).values(**row.model_dump()))
    except sa.exc.IntegrityError:
        raise PeriodClosed(f"{period} was closed by someone else just now") from None
    cb.closed_at = row.closed_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    return cb


def is_closed(engine: sa.Engine, period: str) -> bool:
    return snapshot(engine, period) is not None


__all__ = ["close_period", "is_closed"]
