"""The period lock: closing a month and writing events take turns on it."""

from __future__ import annotations

import sqlalchemy as sa

from .tables import PERIODS

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
    return set(conn.execute(sa.select(PERIODS.c.period)).scalars())


__all__ = ["PERIOD_LOCK", "lock_periods"]
