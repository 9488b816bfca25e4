"""Notes: what the ledger remembers besides calls (budget and credit alerts, spend spikes,
capped runs), each once per kind, subject and month, whichever process notes it first."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from .engine import dialect_insert
from .tables import NOTES


def note_once(engine: sa.Engine, kind: str, subject: str, period: str, message: str, now: datetime) -> bool:
    """Store the note unless one of this kind, subject and period exists; True if this call stored it."""
    stmt = (
        dialect_insert(engine, NOTES)
        .values(ts=now, kind=kind, subject=subject, period=period, message=message)
        .on_conflict_do_nothing(index_elements=["kind", "subject", "period"])
        .returning(NOTES.c.id)
    )
    with engine.begin() as conn:
        return conn.execute(stmt).first() is not None


__all__ = ["note_once"]
