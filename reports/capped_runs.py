"""Agent runs stopped by their caps (`runs:`, costing/run_caps.py): what each had spent when it
was stopped, and why. Read from the ledger's notes (one per capped run) and the run's events."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from meterline.costing import RUN_CAPPED_NOTE, Note, exact, from_pico

from .ledger_queries import EVENTS

NOTES: sa.Table = Note.__table__  # type: ignore[attr-defined]


@dataclass
class CappedRun:
    trace_id: str
    team: str  # charged for the run (its root caller's, per `chargeback.subcalls`)
    department: str
    capped_at: datetime
    why: str
    calls: int  # admitted before the cap
    refused: int  # calls of the run refused since
    cost_usd: Decimal  # what it had spent: at most one call past its cost cap

    def as_dict(self) -> dict[str, Any]:
        return {
            "trace_id": self.trace_id,
            "team": self.team,
            "department": self.department,
            "capped_at": self.capped_at.isoformat(),
            "why": self.why,
            "calls": self.calls,
            "refused": self.refused,
            "cost_usd": exact(self.cost_usd),
        }


def capped_runs(engine: sa.Engine, period: str, department: str | None = None) -> list[CappedRun]:
    """The runs capped in `period` (YYYY-MM), the latest first; of one department's (its
    root call's), with `department`."""
    n, t = NOTES, EVENTS
    with engine.connect() as conn:
        notes = conn.execute(
            sa.select(n.c.subject, n.c.ts, n.c.message).where(n.c.kind == RUN_CAPPED_NOTE, n.c.period == period).order_by(n.c.ts.desc())
        ).all()
        out = []
        for trace, ts, message in notes:
            refused = sa.func.sum(sa.case((t.c.status == "rejected", 1), else_=0))
            row = conn.execute(
                sa.select(sa.func.count(), refused, sa.func.coalesce(sa.func.sum(t.c.cost_pico), 0)).where(t.c.trace_id == trace)
            ).one()
            root = conn.execute(sa.select(t.c.team, t.c.department).where(t.c.trace_id == trace).order_by(t.c.ts).limit(1)).first()
            if department is not None and (root is None or root.department != department):
                continue
            team, _, why = message.partition(": ")
            out.append(
                CappedRun(
                    trace_id=trace,
                    team=root.team if root else team.removeprefix("team "),
                    department=root.department if root else "",
                    capped_at=ts if ts.tzinfo else ts.replace(tzinfo=UTC),
                    why=why or message,
                    calls=int(row[0] or 0) - int(row[1] or 0),
                    refused=int(row[1] or 0),
                    cost_usd=from_pico(int(row[2] or 0)),
                )
            )
    return out


__all__ = ["CappedRun", "capped_runs"]
