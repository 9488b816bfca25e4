"""Chargeback: what each department is billed for a month, line by line."""

from __future__ import annotations

from dataclasses import dataclass, fields
from decimal import Decimal

import sqlalchemy as sa

from costing import ZERO, Org, Settings, from_pico, largest_remainder

from .ledger_queries import rollup_sums

LINE_DIMS = ["department", "team", "project", "kind", "provider", "model", "tool"]
PLACES = 6  # line items keep six decimals


@dataclass
class ChargebackLine:
    period: str
    department: str
    cost_center: str
    team: str
    project: str
    kind: str
    provider: str
    model: str
    tool: str
    requests: int
    input_tokens: int
    cached_input_tokens: int
    output_tokens: int
    reasoning_tokens: int
    tool_calls: int
    cost_usd: Decimal
    allocated_usd: Decimal = ZERO
    markup_usd: Decimal = ZERO
    exact_cost_usd: Decimal = ZERO  # before rounding to six places

    @property
    def charge_usd(self) -> Decimal:
        return self.cost_usd + self.allocated_usd + self.markup_usd


CSV_COLUMNS = [f.name for f in fields(ChargebackLine) if f.name != "exact_cost_usd"] + ["charge_usd"]


def chargeback(engine: sa.Engine, settings: Settings, period: str) -> list[ChargebackLine]:
    """The month's lines, rounded so that they add up exactly to the month's rounded total."""
    org = Org(settings)
    rows = rollup_sums(engine, period, LINE_DIMS)
    exact = [from_pico(r["cost_pico"]) for r in rows]
    rounded = largest_remainder(exact, PLACES)
    return [
        ChargebackLine(
            period=period,
            department=r["department"],
            cost_center=org.cost_center(r["department"]),
            team=r["team"],
            project=r["project"],
            kind=r["kind"],
            provider=r["provider"],
            model=r["model"],
            tool=r["tool"],
            requests=r["requests"],
            input_tokens=r["input_tokens"],
            cached_input_tokens=r["cached_input_tokens"],
            output_tokens=r["output_tokens"],
            reasoning_tokens=r["reasoning_tokens"],
            tool_calls=r["tool_calls"],
            cost_usd=cost,
            exact_cost_usd=x,
        )
        for r, cost, x in zip(rows, rounded, exact)
    ]
