"""Credit balances for people: each grant's balance and burn-down, the day it is forecast to
run out, grants about to expire, credit alerts, and what rate cards do to this month's charge.

Everything is the core's derivation from the ledger (costing/credit_ledger.py) and the
chargeback; nothing is computed a second way here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

import sqlalchemy as sa

from meterline.costing import ZERO, Settings, from_pico, load_chargeback, period_of
from meterline.costing.credit_ledger import all_grants, drawdown
from meterline.costing.credits import NEVER
from meterline.costing.tables import NOTES

EXPIRING_DAYS = 14  # a grant ending within this many days is "about to expire"
RATE_DAYS = 7  # the forecast's run rate: what was drawn over the last week


@dataclass
class GrantStatus:
    id: str
    scope: str  # team | department
    owner: str  # the team or department id
    department: str
    granted_usd: Decimal  # this instance's amount (a recurring grant: this month's, rollover included)
    drawn_usd: Decimal  # from this instance
    balance_usd: Decimal
    ends: datetime | None  # expiry, revocation or (recurring) the month's end
    run_out: date | None  # at the last week's rate, if before it ends
    burn: list[tuple[date, Decimal]] = field(default_factory=list)  # balance at the end of each day

    @property
    def expiring(self) -> bool:
        return self.ends is not None and self.balance_usd > 0


@dataclass
class RateCardEffect:
    department: str
    cost_usd: Decimal  # of the usage its cards rate
    rated_usd: Decimal  # the same usage at its cards
    shortfall_usd: Decimal  # a commitment's shortfall line


@dataclass
class CreditsView:
    period: str
    grants: list[GrantStatus]
    expiring: list[GrantStatus]
    alerts: list[tuple[str, str]]  # (when, message) of this month's credit_low notes
    rate_cards: list[RateCardEffect]


def credits_view(engine: sa.Engine, settings: Settings, now: datetime, department: str | None = None) -> CreditsView:
    period = period_of(now)
    team_dept = {t.id: d.id for d in settings.departments for t in d.teams}
    grants = all_grants(engine, settings)
    d = drawdown(engine, grants, now + timedelta(microseconds=1))
    out: list[GrantStatus] = []
    for g in grants:
        inst = d.current(g.id, now)
        if inst is None:
            continue
        kind, owner = g.scope
        dept = team_dept.get(owner, "") if kind == "team" else owner
        if department is not None and dept != department:
            continue
        days: dict[date, int] = {}
        for (gid, day, _, _), pico in d.by_day.items():
            if gid == g.id and inst.start.date() <= day:
                days[day] = days.get(day, 0) + pico
        burn, left = [], inst.amount_pico
        day = inst.start.date()
        while day <= now.date():
            left -= days.get(day, 0)
            burn.append((day, from_pico(left)))
            day += timedelta(days=1)
        week = sum(p for day, p in days.items() if day > now.date() - timedelta(days=RATE_DAYS))
        per_day = Decimal(week) / RATE_DAYS
        run_out = None
        if per_day > 0 and inst.remaining_pico > 0:
            run_out = now.date() + timedelta(days=int(Decimal(inst.remaining_pico) / per_day))
        ends = None if inst.end == NEVER else inst.end
        if run_out is not None and ends is not None and run_out >= ends.date():
            run_out = None  # it ends first
        out.append(
            GrantStatus(
                id=g.id, scope=kind, owner=owner, department=dept, granted_usd=from_pico(inst.amount_pico),
                drawn_usd=from_pico(inst.drawn_pico), balance_usd=from_pico(inst.remaining_pico), ends=ends,
                run_out=run_out, burn=burn,
            )
        )  # fmt: skip
    soon = now + timedelta(days=EXPIRING_DAYS)
    expiring = [s for s in out if s.ends is not None and s.ends <= soon and s.balance_usd > 0]
    with engine.connect() as conn:
        notes = conn.execute(
            sa.select(NOTES.c.ts, NOTES.c.subject, NOTES.c.message)
            .where(NOTES.c.kind == "credit_low", NOTES.c.period == period)
            .order_by(NOTES.c.ts)
        ).all()
    alerts = [(f"{ts:%Y-%m-%d %H:%M}", msg) for ts, subject, msg in notes if department is None or _of(subject, team_dept) == department]
    return CreditsView(period, out, expiring, alerts, rate_card_effects(engine, settings, period, department))


def _of(subject: str, team_dept: dict[str, str]) -> str:
    kind, _, rest = subject.partition(":")
    ident = rest.rsplit(":", 1)[0]
    return team_dept.get(ident, "") if kind == "team" else ident


def rate_card_effects(engine: sa.Engine, settings: Settings, period: str, department: str | None = None) -> list[RateCardEffect]:
    """Per department with a rate card: the rated usage's cost and charge, and any shortfall."""
    if not settings.rate_cards:
        return []
    cb = load_chargeback(engine, settings, period)
    out = []
    for dept in sorted({c.department for c in settings.rate_cards}):
        if department is not None and dept != department:
            continue
        lines = [ln for ln in cb.lines if ln.department == dept]
        rated = [ln for ln in lines if ln.rated_usd is not None]
        out.append(
            RateCardEffect(
                department=dept,
                cost_usd=sum((ln.cost_usd for ln in rated), ZERO),
                rated_usd=sum((ln.rated_usd or ZERO for ln in rated), ZERO),
                shortfall_usd=sum((ln.markup_usd for ln in lines if ln.kind == "commitment"), ZERO),
            )
        )
    return out


__all__ = ["EXPIRING_DAYS", "CreditsView", "GrantStatus", "RateCardEffect", "credits_view", "rate_card_effects"]
