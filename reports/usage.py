"""Usage for a billing month grouped by what a caller asks (day, department, team, project,
model, key): the admin API's `/admin/usage`, and a key holder's own spend.

The same sums as showback: from the hourly rollups, except when grouped by key, which the
rollups do not carry; then from the events, whose sums the rollups equal by construction
(costing/ledger_writes.py adds each new event to them in the same transaction).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from meterline.costing import Org, Settings, configured_limits, exact, from_pico

from .ledger_queries import EVENTS, key_spend, rollup_sums

GROUPS = ("day", "department", "team", "project", "model", "key")
"""What usage can be grouped by, in the order columns come out."""

_COLUMN = {"day": "day", "department": "department", "team": "team", "project": "project", "model": "model", "key": "key_id"}
_SUMS = ("requests", "input_tokens", "cached_input_tokens", "output_tokens", "reasoning_tokens", "cost_pico")


@dataclass(frozen=True, slots=True)
class UsageRow:
    group: dict[str, str]  # column -> value (`day` as YYYY-MM-DD, `key` as key_id)
    requests: int
    input_tokens: int
    cached_input_tokens: int
    output_tokens: int
    reasoning_tokens: int
    cost_usd: Decimal

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.group,
            "requests": self.requests,
            "input_tokens": self.input_tokens,
            "cached_input_tokens": self.cached_input_tokens,
            "output_tokens": self.output_tokens,
            "reasoning_tokens": self.reasoning_tokens,
            "cost_usd": exact(self.cost_usd),
        }


@dataclass(frozen=True, slots=True)
class Usage:
    period: str
    group_by: tuple[str, ...]
    rows: list[UsageRow]

    @property
    def total_usd(self) -> Decimal:
        return sum((r.cost_usd for r in self.rows), Decimal(0))

    def as_dict(self) -> dict[str, Any]:
        return {
            "month": self.period,
            "group_by": list(self.group_by),
            "rows": [r.as_dict() for r in self.rows],
            "total_usd": exact(self.total_usd),
            "requests": sum(r.requests for r in self.rows),
        }


def usage(engine: sa.Engine, period: str, group_by: Sequence[str]) -> Usage:
    """The month's usage summed per combination of `group_by` (each one of GROUPS, none twice;
    empty: one row for the whole month), ordered by the group values."""
    unknown = [g for g in group_by if g not in GROUPS]
    if unknown or len(set(group_by)) != len(group_by):
        raise ValueError(f"group_by: expected distinct values of {', '.join(GROUPS)}")
    by = tuple(g for g in GROUPS if g in group_by)  # a fixed column order, whatever was asked
    sums: dict[tuple[str, ...], list[int]] = {}
    for r in _events(engine, period, by) if "key" in by else _rollups(engine, period, by):
        values = tuple(_text(r[_COLUMN[g]]) for g in by)
        acc = sums.setdefault(values, [0] * len(_SUMS))
        for i, s in enumerate(_SUMS):
            acc[i] += int(r[s] or 0)
    rows = [
        UsageRow(
            {_COLUMN[g]: v for g, v in zip(by, values, strict=True)},
            requests, input_tokens, cached, output_tokens, reasoning, from_pico(cost),
        )  # fmt: skip
        for values, (requests, input_tokens, cached, output_tokens, reasoning, cost) in sorted(sums.items())
    ]
    return Usage(period, by, rows)


def _text(v: Any) -> str:
    if isinstance(v, datetime):
        return v.date().isoformat()
    if isinstance(v, date):
        return v.isoformat()
    return "" if v is None else str(v)


def _rollups(engine: sa.Engine, period: str, by: tuple[str, ...]) -> list[dict[str, Any]]:
    dims = ["hour" if g == "day" else _COLUMN[g] for g in by]
    rows = rollup_sums(engine, period, dims)
    for r in rows:
        if "hour" in r:
            r["day"] = r["hour"]  # folded into days by the caller's sums
    return rows


def _events(engine: sa.Engine, period: str, by: tuple[str, ...]) -> list[dict[str, Any]]:
    t = EVENTS
    cols: list[sa.ColumnElement[Any]] = []
    for g in by:
        if g == "day":
            ts = sa.func.timezone("UTC", t.c.ts) if engine.dialect.name == "postgresql" else t.c.ts
            cols.append(sa.func.date(ts).label("day"))
        else:
            cols.append(t.c[_COLUMN[g]])
    q = sa.select(*cols, *(sa.func.sum(t.c[s]).label(s) for s in _SUMS[1:]), sa.func.count().label("requests"))
    q = q.where(t.c.charge_period == period).group_by(*cols)
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(q).mappings()]


def key_month_spend(engine: sa.Engine, period: str, key_id: str) -> Decimal:
    """What one key spent in a billing month."""
    return from_pico(key_spend(engine, period, [key_id]).get(key_id, 0))


@dataclass(frozen=True, slots=True)
class HolderBudget:
    scope: str  # department | team | key
    id: str
    limit_usd: Decimal
    spent_usd: Decimal

    def as_dict(self) -> dict[str, Any]:
        left = max(self.limit_usd - self.spent_usd, Decimal(0))
        return {"scope": self.scope, "id": self.id, "limit_usd": exact(self.limit_usd), "spent_usd": exact(self.spent_usd), "remaining_usd": exact(left)}


def holder_usage(
    engine: sa.Engine, settings: Settings, period: str, *, key_id: str, team: str, key_budget_usd: Decimal | None = None
) -> dict[str, Any]:
    """What the holder of one key may see: its own spend in `period`, and the budgets it is
    charged against (its department's, its team's, its own) with what they leave. Nothing of
    any other key."""
    org = Org(settings)
    t = org.teams.get(team)
    department = t.department if t else ""
    limits = configured_limits(settings)
    if key_budget_usd is not None:
        limits.setdefault(("key", key_id), key_budget_usd)
    spent_by: dict[tuple[str, str], int] = {}
    for scope in (("department", department), ("team", team)):
        if scope[1] and scope in limits:  # read as the proxy's budget check reads it
            spent_by[scope] = sum(r["cost_pico"] for r in rollup_sums(engine, period, [scope[0]], {scope[0]: scope[1]}))
    own = key_month_spend(engine, period, key_id)
    budgets = []
    for scope in (("department", department), ("team", team), ("key", key_id)):
        if scope[1] and scope in limits:
            spent = own if scope[0] == "key" else from_pico(spent_by.get(scope, 0))
            budgets.append(HolderBudget(scope[0], scope[1], limits[scope], spent).as_dict())
    return {"key_id": key_id, "team": team, "department": department, "month": period, "spend_usd": exact(own), "budgets": budgets}


__all__ = ["GROUPS", "HolderBudget", "Usage", "UsageRow", "holder_usage", "key_month_spend", "usage"]
