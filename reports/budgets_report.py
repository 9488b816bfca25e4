"""Budgets against the month: spent, burn per day, forecast, and who is near or over.

The spend is the ledger's (what the proxy's budget check also re-reads): rollups by charge
month for departments and teams, events for keys. `near` is the configured soft threshold
(`budgets.soft_threshold_percent`); `over` means calls are being refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

import sqlalchemy as sa

from meterline.costing import ZERO, Note, Org, Settings, configured_limits, from_pico, list_keys

from .ledger_queries import key_spend, rollup_sums
from .trend import FORECAST_MIN_DAYS, forecast

STATES = ("over", "near", "forecast_over", "ok")  # worst first
# What the pages call each state: the table, the chart's legend and the messages use these words.
STATE_TEXT = {"over": "over: calls refused", "near": "near the limit", "forecast_over": "on course to pass", "ok": "within budget"}


@dataclass
class BudgetStatus:
    scope: str  # department | team | key
    id: str
    name: str
    department: str  # the department it belongs to ("" for a key of an unknown team)
    budget_usd: Decimal
    spent_usd: Decimal
    run_rate_usd: Decimal | None  # month-end at the run rate; the open month after FORECAST_MIN_DAYS
    threshold_percent: Decimal
    burn: list[tuple[date, Decimal]] = field(default_factory=list)  # cumulative spend per day
    refusing: bool = False  # its calls were refused this month (the proxy noted it): over, whatever it spent

    @property
    def forecast_usd(self) -> Decimal | None:
        """Month-end spend: the run rate, but no further than the budget, since calls past it
        are refused (or what is already spent, when that is more)."""
        if self.run_rate_usd is None:
            return None
        return min(self.run_rate_usd, max(self.budget_usd, self.spent_usd))

    @property
    def capped(self) -> bool:
        """The run rate would pass the budget: the forecast stops at it."""
        return self.run_rate_usd is not None and self.run_rate_usd > max(self.budget_usd, self.spent_usd)

    @property
    def used_percent(self) -> Decimal:
        if not self.budget_usd:
            return Decimal(100) if self.spent_usd else ZERO
        return (self.spent_usd * 100 / self.budget_usd).quantize(Decimal("0.1"))

    @property
    def state(self) -> str:
        # A call is refused when what it may cost would pass the budget, so a refusing budget
        # can show a little under 100%: the proxy's note says it is refusing.
        if self.refusing or self.spent_usd >= self.budget_usd:
            return "over"
        if self.spent_usd * 100 >= self.budget_usd * self.threshold_percent:
            return "near"
        if self.run_rate_usd is not None and self.run_rate_usd > self.budget_usd:
            return "forecast_over"
        return "ok"


def _refusing(engine: sa.Engine, period: str) -> set[str]:
    """Budgets ("scope:id") whose calls the proxy refused in `period`: its once-a-month note."""
    t: sa.Table = Note.__table__  # type: ignore[attr-defined]
    with engine.connect() as conn:
        return set(conn.execute(sa.select(t.c.subject).where(t.c.kind == "budget_hard", t.c.period == period)).scalars())


def _cumulative(per_day: dict[date, int]) -> list[tuple[date, Decimal]]:
    out, running = [], 0
    for day in sorted(per_day):
        running += per_day[day]
        out.append((day, from_pico(running)))
    return out


def budget_status(
    engine: sa.Engine,
    settings: Settings,
    period: str,
    *,
    now: datetime | None = None,
    department: str | None = None,
) -> list[BudgetStatus]:
    """Every configured budget (of `department` only, when given), worst first."""
    org = Org(settings)
    limits = configured_limits(settings)
    threshold = settings.budgets.soft_threshold_percent
    all_keys = list_keys(engine)
    # A key's own budget, set when it was issued (`budget_usd_monthly`); the config's wins.
    for k in all_keys:
        if k.budget_pico is not None and k.revoked_at is None:
            limits.setdefault(("key", k.id), from_pico(k.budget_pico))
    key_team = {k.id: k.team for k in all_keys}
    daily: dict[tuple[str, str], dict[date, int]] = {}
    for r in rollup_sums(engine, period, ["hour", "department", "team"]):
        for spender in (("department", r["department"]), ("team", r["team"])):
            per_day = daily.setdefault(spender, {})
            day = r["hour"].date()
            per_day[day] = per_day.get(day, 0) + r["cost_pico"]
    refusing = _refusing(engine, period)
    key_ids = [i for s, i in limits if s == "key"]
    keys = key_spend(engine, period, key_ids) if key_ids else {}
    out = []
    for (scope, ident), budget in limits.items():
        if scope == "department":
            dept, name = ident, _name(org, ident)
        elif scope == "team":
            team = org.teams.get(ident)
            dept, name = (team.department if team else ""), (team.name if team else ident)
        else:
            team = org.teams.get(key_team.get(ident, ""))
            dept, name = (team.department if team else ""), f"key {ident}"
        if department is not None and dept != department:
            continue
        burn = _cumulative(daily.get((scope, ident), {})) if scope != "key" else []
        spent = burn[-1][1] if burn else (from_pico(keys.get(ident, 0)) if scope == "key" else ZERO)
        out.append(
            BudgetStatus(
                scope, ident, name, dept, budget, spent, forecast(spent, period, now, min_days=FORECAST_MIN_DAYS), threshold, burn,
                refusing=f"{scope}:{ident}" in refusing,
            )
        )
    return sorted(out, key=lambda b: (STATES.index(b.state), -b.used_percent, b.scope, b.id))


def _name(org: Org, dept: str) -> str:
    cfg = org.departments.get(dept)
    return (cfg.name or cfg.id) if cfg else dept


__all__ = ["STATES", "STATE_TEXT", "BudgetStatus", "budget_status"]
