"""The month at a glance: spend so far, forecast, change, spend per day, the top spenders.

Everything comes from the hourly rollups, so a month of a million calls reads a few thousand
rows. The figures with no filters equal `showback` (tested).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal

import sqlalchemy as sa

from meterline.costing import ZERO, Org, from_pico, previous_period

from .filters import ALL, Filters
from .ledger_queries import rollup_sums
from .trend import FORECAST_MIN_DAYS, change_percent, forecast, same_stretch


@dataclass
class Ranked:
    """One team, model or user with its month."""

    name: str
    label: str  # for people: "nlp (Research)", "(no user)"
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: Decimal = ZERO


@dataclass
class DaySpend:
    day: date
    department: str
    name: str  # the department's display name
    requests: int
    cost_usd: Decimal


@dataclass
class Overview:
    period: str
    total_usd: Decimal
    requests: int
    previous_total_usd: Decimal | None  # the whole month before (None: no usage in it)
    compare_usd: Decimal | None  # what this month is compared with (None: no usage then)
    compare_until: datetime | None  # the open month: its same stretch of the month before ends here
    forecast_usd: Decimal | None  # month-end at the run rate; the open month after FORECAST_MIN_DAYS
    unpriced_requests: int  # no price known: recorded at 0 until a `prices:` entry exists
    estimated_requests: int  # usage estimated by the proxy (the upstream reported none)
    estimated_usd: Decimal
    rejected_requests: int  # refused before the upstream (budgets)
    daily: list[DaySpend] = field(default_factory=list)
    top_teams: list[Ranked] = field(default_factory=list)
    top_models: list[Ranked] = field(default_factory=list)
    top_users: list[Ranked] = field(default_factory=list)

    @property
    def change_percent(self) -> Decimal | None:
        return change_percent(self.total_usd, self.compare_usd)


def _dept_name(org: Org, dept: str) -> str:
    cfg = org.departments.get(dept)
    return (cfg.name or cfg.id) if cfg else (dept or "(unattributed)")


def _aware(hour: datetime) -> datetime:
    return hour if hour.tzinfo else hour.replace(tzinfo=UTC)


def _rank(acc: dict[str, Ranked], name: str, label: str, r: dict[str, int]) -> None:
    x = acc.get(name)
    if x is None:
        x = acc[name] = Ranked(name, label)
    x.requests += r["requests"]
    x.input_tokens += r["input_tokens"]
    x.output_tokens += r["output_tokens"]
    x.cost_usd += from_pico(r["cost_pico"])


def _top(acc: dict[str, Ranked], n: int) -> list[Ranked]:
    return sorted(acc.values(), key=lambda x: (-x.cost_usd, -x.requests, x.name))[:n]


def overview(
    engine: sa.Engine,
    org: Org,
    period: str,
    filters: Filters = ALL,
    *,
    now: datetime | None = None,
    top: int = 10,
) -> Overview:
    where, tags = filters.where(), filters.tags
    rows = rollup_sums(engine, period, ["department", "team", "model", "user", "priced", "usage_source", "status"], where, tags=tags)
    teams: dict[str, Ranked] = {}
    models: dict[str, Ranked] = {}
    users: dict[str, Ranked] = {}
    total_pico = requests = unpriced = estimated = estimated_pico = rejected = 0
    for r in rows:
        total_pico += r["cost_pico"]
        requests += r["requests"]
        if not r["priced"]:
            unpriced += r["requests"]
        if r["usage_source"] == "estimated" and r["status"] != "rejected":  # a refusal has no usage at all
            estimated += r["requests"]
            estimated_pico += r["cost_pico"]
        if r["status"] == "rejected":
            rejected += r["requests"]
        team = org.teams.get(r["team"])
        team_label = f"{team.name if team else r['team'] or '(no team)'} ({_dept_name(org, r['department'])})"
        _rank(teams, f"{r['department']}/{r['team']}", team_label, r)
        if r["model"]:
            _rank(models, r["model"], r["model"], r)
        _rank(users, r["user"], r["user"] or "(no user)", r)
    # The month before, whole and up to the same point of it (an open month so far is compared
    # with as long a stretch of the last one, never with all of it).
    until = same_stretch(period, now)
    whole = same = 0
    seen = False
    for r in rollup_sums(engine, previous_period(period), ["hour"], where, tags=tags):
        seen = seen or r["requests"] > 0
        whole += r["cost_pico"]
        if until is None or _aware(r["hour"]) < until:
            same += r["cost_pico"]
    total = from_pico(total_pico)
    return Overview(
        period=period,
        total_usd=total,
        requests=requests,
        previous_total_usd=from_pico(whole) if seen else None,
        compare_usd=from_pico(same) if seen else None,
        compare_until=until,
        forecast_usd=forecast(total, period, now, min_days=FORECAST_MIN_DAYS),
        unpriced_requests=unpriced,
        estimated_requests=estimated,
        estimated_usd=from_pico(estimated_pico),
        rejected_requests=rejected,
        daily=daily_spend(engine, org, period, filters),
        top_teams=_top(teams, top),
        top_models=_top(models, top),
        top_users=_top(users, top),
    )


def daily_spend(engine: sa.Engine, org: Org, period: str, filters: Filters = ALL) -> list[DaySpend]:
    """Spend per UTC day and department (hourly rollups folded into days)."""
    days: dict[tuple[date, str], list[int]] = {}
    for r in rollup_sums(engine, period, ["hour", "department"], filters.where(), tags=filters.tags):
        acc = days.setdefault((r["hour"].date(), r["department"]), [0, 0])
        acc[0] += r["requests"]
        acc[1] += r["cost_pico"]
    return [
        DaySpend(day, dept, _dept_name(org, dept), req, from_pico(pico))
        for (day, dept), (req, pico) in sorted(days.items())
    ]


__all__ = ["DaySpend", "Overview", "Ranked", "daily_spend", "overview"]
