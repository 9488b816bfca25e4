"""Credit alerts: a team's or department's credit balance fell below one of its
`credit_alerts_usd` thresholds. Once per threshold, scope and month, fleet-wide: the first
process to store the note (kind `credit_low`) logs it and hands it to the webhook, as budget
alerts do (budget_alerts.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

import sqlalchemy as sa

from .credits import Drawdown, Scope
from .money import from_pico, usd
from .notes import note_once

if TYPE_CHECKING:
    from .config import Settings

KIND = "credit_low"


@dataclass(frozen=True, slots=True)
class CreditAlert:
    scope: Scope
    period: str
    threshold: Decimal
    balance: Decimal
    kind: str = KIND

    @property
    def subject(self) -> str:
        return f"{self.scope[0]}:{self.scope[1]}:{self.threshold}"

    @property
    def message(self) -> str:
        return (
            f"{self.scope[0]} {self.scope[1]!r} has {usd(self.balance, 2)} USD of credits left, "
            f"below its alert at {usd(self.threshold, 2)} USD ({self.period})"
        )


def pools(settings: Settings, scope: Scope) -> list[Scope]:
    """The credit pools a scope's calls draw: a team's own and its department's; a
    department's own and its teams'."""
    for d in settings.departments:
        if scope == ("department", d.id):
            return [scope, *(("team", t.id) for t in d.teams)]
        for t in d.teams:
            if scope == ("team", t.id):
                return [scope, ("department", d.id)]
    return [scope]


def due(settings: Settings, d: Drawdown, now: datetime, period: str) -> list[CreditAlert]:
    """The thresholds each scope's balance is below now (scopes with a grant that counts now
    or counted this month; a scope that never had credit is not "running low")."""
    out: list[CreditAlert] = []
    scopes: list[tuple[Scope, list[Decimal]]] = []
    for dept in settings.departments:
        scopes.append((("department", dept.id), dept.credit_alerts_usd))
        scopes.extend((("team", t.id), t.credit_alerts_usd) for t in dept.teams)
    for scope, thresholds in scopes:
        if not thresholds:
            continue
        mine = set(pools(settings, scope))
        if not any(i.grant.scope in mine and (i.counts_at(now) or f"{i.end:%Y-%m}" == period) for i in d.instances):
            continue
        balance = from_pico(d.balance(mine, now))
        out.extend(CreditAlert(scope, period, Decimal(t), balance) for t in thresholds if balance < t)
    return out


def store(engine: sa.Engine, alert: CreditAlert, now: datetime) -> bool:
    """Note the alert once per threshold, scope and month; True if this call stored it."""
    return note_once(engine, alert.kind, alert.subject, alert.period, alert.message, now)


__all__ = ["KIND", "CreditAlert", "due", "pools", "store"]
