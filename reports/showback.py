"""Showback: who spent what in a month, by department and team."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

import sqlalchemy as sa

from meterline.costing import ZERO, Org, from_pico, previous_period

from .dimensions import DimensionCosts, dimension_costs
from .ledger_queries import rollup_sums
from .trend import change_percent, forecast


@dataclass
class TeamSpend:
    team: str
    cost_usd: Decimal = ZERO
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    unpriced_requests: int = 0


@dataclass
class DepartmentSpend:
    department: str
    name: str
    cost_center: str
    cost_usd: Decimal = ZERO
    requests: int = 0
    teams: list[TeamSpend] = field(default_factory=list)
    previous_cost_usd: Decimal = ZERO  # the month before


@dataclass
class UnpricedUsage:
    """Usage of a model with no known price: recorded at 0 and shown on a line of its own."""

    model: str
    requests: int
    input_tokens: int
    output_tokens: int


@dataclass
class Showback:
    period: str
    total_usd: Decimal
    requests: int
    unpriced_requests: int
    estimated_requests: int
    departments: list[DepartmentSpend]
    previous_total_usd: Decimal = ZERO  # the month before
    forecast_usd: Decimal | None = None  # month-end at the run rate so far; open month only
    unpriced: list[UnpricedUsage] = field(default_factory=list)  # by model
    dimensions: DimensionCosts = field(default_factory=DimensionCosts)  # cost by billed dimension

    def as_dict(self) -> dict[str, object]:
        return {
            "period": self.period,
            "total_usd": str(self.total_usd),
            "requests": self.requests,
            "unpriced_requests": self.unpriced_requests,
            "estimated_requests": self.estimated_requests,
            "previous_total_usd": str(self.previous_total_usd),
            "change_percent": _str(change_percent(self.total_usd, self.previous_total_usd)),
            "forecast_usd": _str(self.forecast_usd),
            **self.dimensions.as_dict(),
            "unpriced": [
                {"model": u.model, "requests": u.requests, "input_tokens": u.input_tokens, "output_tokens": u.output_tokens}
                for u in self.unpriced
            ],
            "departments": [
                {
                    "department": d.department,
                    "name": d.name,
                    "cost_center": d.cost_center,
                    "cost_usd": str(d.cost_usd),
                    "requests": d.requests,
                    "previous_cost_usd": str(d.previous_cost_usd),
                    "change_percent": _str(change_percent(d.cost_usd, d.previous_cost_usd)),
                    "teams": [
                        {
                            "team": t.team,
                            "cost_usd": str(t.cost_usd),
                            "requests": t.requests,
                            "input_tokens": t.input_tokens,
                            "output_tokens": t.output_tokens,
                            "unpriced_requests": t.unpriced_requests,
                        }
                        for t in d.teams
                    ],
                }
                for d in self.departments
            ],
        }


def _str(v: Decimal | None) -> str | None:
    return None if v is None else str(v)


def showback(engine: sa.Engine, org: Org, period: str, *, now: datetime | None = None) -> Showback:
    """Exact spend per department and team for a billing month, from the hourly rollups, with
    the month before and (for the month `now` is in) a month-end forecast."""
    rows = rollup_sums(engine, period, ["department", "team", "priced", "usage_source", "status"])
    depts: dict[str, DepartmentSpend] = {}
    teams: dict[tuple[str, str], TeamSpend] = {}
    unpriced = estimated = 0
    for r in rows:
        d = depts.get(r["department"])
        if d is None:
            cfg = org.departments.get(r["department"])
            name = (cfg.name or cfg.id) if cfg else (r["department"] or "(unattributed)")
            d = depts[r["department"]] = DepartmentSpend(r["department"], name, org.cost_center(r["department"]))
        t = teams.get((r["department"], r["team"]))
        if t is None:
            t = teams[(r["department"], r["team"])] = TeamSpend(r["team"])
            d.teams.append(t)
        cost = from_pico(r["cost_pico"])
        d.cost_usd += cost
        d.requests += r["requests"]
        t.cost_usd += cost
        t.requests += r["requests"]
        t.input_tokens += r["input_tokens"]
        t.output_tokens += r["output_tokens"]
        if not r["priced"]:
            t.unpriced_requests += r["requests"]
            unpriced += r["requests"]
        if r["usage_source"] == "estimated" and r["status"] != "rejected":  # a refusal has no usage to estimate
            estimated += r["requests"]
    ordered = sorted(depts.values(), key=lambda d: (-d.cost_usd, d.department))
    for d in ordered:
        d.teams.sort(key=lambda t: (-t.cost_usd, t.team))
    previous = {r["department"]: from_pico(r["cost_pico"]) for r in rollup_sums(engine, previous_period(period), ["department"])}
    for d in ordered:
        d.previous_cost_usd = previous.get(d.department, ZERO)
    total = sum((d.cost_usd for d in ordered), ZERO)
    return Showback(
        period=period,
        total_usd=total,
        requests=sum(d.requests for d in ordered),
        unpriced_requests=unpriced,
        estimated_requests=estimated,
        departments=ordered,
        previous_total_usd=sum(previous.values(), ZERO),
        forecast_usd=forecast(total, period, now),
        unpriced=[
            UnpricedUsage(r["model"], r["requests"], r["input_tokens"], r["output_tokens"])
            for r in rollup_sums(engine, period, ["model"], {"priced": False})
        ]
        if unpriced
        else [],
        dimensions=dimension_costs(engine, period, total),
    )
