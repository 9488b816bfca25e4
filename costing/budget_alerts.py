"""Budget alerts: what is said when a scope reaches its soft threshold or is first refused,
and the note that makes it happen once per scope and month across the fleet.

An alert is a value; the first process to store its note (`store`) logs it and hands it to
whoever announces alerts. Announcing (the webhook) is not the core's business: the proxy
passes a callback to Budgets (proxy/alerts.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import sqlalchemy as sa

from .money import usd
from .notes import note_once

Announce = Callable[["Alert"], None]
"""Told each alert this process stored first (from the budgets' background thread)."""


@dataclass(frozen=True, slots=True)
class Alert:
    kind: str  # budget_soft | budget_hard
    scope: tuple[str, str]  # ("department" | "team" | "key", id)
    period: str
    budget: Decimal
    spent: Decimal
    threshold_percent: Decimal  # the soft threshold in force (budgets.soft_threshold_percent)

    @property
    def subject(self) -> str:
        return f"{self.scope[0]}:{self.scope[1]}"

    @property
    def message(self) -> str:
        """The note's text and the log line's."""
        what = "reached its soft threshold" if self.kind == "budget_soft" else "is over its budget; calls are refused"
        return f"{self.scope[0]} {self.scope[1]!r} {what}: {usd(self.spent, 2)} of {usd(self.budget, 2)} USD in {self.period}"


def store(engine: sa.Engine, alert: Alert, now: datetime) -> bool:
    """Note the alert once per scope and month; True if this call stored it (no other
    process, nor this one, had)."""
    return note_once(engine, alert.kind, alert.subject, alert.period, alert.message, now)


__all__ = ["Alert", "Announce", "store"]
