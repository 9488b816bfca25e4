"""Retention: dropping raw events that no report needs any more.

Showback, chargeback and their trends read the hourly rollups, which `write_events` keeps
in the same transaction as the events, and a closed month's chargeback is its stored
snapshot. So once a month is closed its raw events only serve the per-call views (the events
export, agent runs and call trees). `prune_events` deletes them, a whole month at a time, for
months that are closed and ended more than `older_than_days` ago; the rollups and snapshots
stay, so no showback or chargeback changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from .errors import ConfigError
from .months import month_end
from .tables import EVENTS, PERIODS


@dataclass
class Pruned:
    cutoff: datetime
    months: dict[str, int] = field(default_factory=dict)  # month -> raw events deleted

    @property
    def events(self) -> int:
        return sum(self.months.values())


def prunable_months(engine: sa.Engine, older_than_days: int, now: datetime | None = None) -> list[str]:
    """Closed months that ended before the cutoff, oldest first."""
    if older_than_days < 0:
        raise ConfigError("the retention age must be zero or more days", key="older_than_days")
    cutoff = (now or datetime.now(UTC)) - timedelta(days=older_than_days)
    with engine.connect() as conn:
        closed = conn.execute(sa.select(PERIODS.c.period).order_by("period")).scalars().all()
    return [p for p in closed if month_end(p) <= cutoff]


def prune_events(engine: sa.Engine, older_than_days: int, now: datetime | None = None) -> Pruned:
    """Delete the raw events billed in closed months that ended more than `older_than_days`
    days before `now`. Rollups and period snapshots are kept; returns what was deleted."""
    now = now or datetime.now(UTC)
    result = Pruned(cutoff=now - timedelta(days=older_than_days))
    t = EVENTS
    for period in prunable_months(engine, older_than_days, now):
        # One transaction per month: an interrupted prune leaves whole months, never half of one.
        with engine.begin() as conn:
            n = conn.execute(sa.delete(t).where(t.c.charge_period == period)).rowcount
        if n:
            result.months[period] = n
    return result


__all__ = ["Pruned", "prunable_months", "prune_events"]
