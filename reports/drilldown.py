"""Drill-down: department -> team -> project -> model -> user, with tokens, requests and cost."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

import sqlalchemy as sa

from meterline.costing import ZERO, from_pico

from .filters import ALL, Filters
from .ledger_queries import rollup_sums

LEVELS = ("department", "team", "project", "model", "user")


@dataclass
class DrillRow:
    value: str  # this level's value ("" = none recorded)
    requests: int
    input_tokens: int
    cached_input_tokens: int
    output_tokens: int
    reasoning_tokens: int
    tool_calls: int
    cost_usd: Decimal


@dataclass
class Drill:
    path: tuple[str, ...]  # the values chosen so far, one per level from the top
    level: str  # the level `rows` are grouped by ("" below the last level)
    rows: list[DrillRow] = field(default_factory=list)

    @property
    def total_usd(self) -> Decimal:
        return sum((r.cost_usd for r in self.rows), ZERO)

    @property
    def requests(self) -> int:
        return sum(r.requests for r in self.rows)


def drilldown(engine: sa.Engine, period: str, path: tuple[str, ...] = (), filters: Filters = ALL) -> Drill:
    """The month under `path` (values for the first len(path) levels), by the next level,
    most expensive first."""
    if len(path) > len(LEVELS):
        raise ValueError(f"a drill-down path has at most {len(LEVELS)} levels")
    where = filters.where()
    for level, value in zip(LEVELS, path, strict=False):
        if level in where and value not in where[level]:
            return Drill(path, LEVELS[len(path)] if len(path) < len(LEVELS) else "")
        where[level] = value
    level = LEVELS[len(path)] if len(path) < len(LEVELS) else ""
    rows = rollup_sums(engine, period, [level] if level else [], where, tags=filters.tags)
    out = [
        DrillRow(
            value=r.get(level, path[-1] if path else ""),
            requests=r["requests"],
            input_tokens=r["input_tokens"],
            cached_input_tokens=r["cached_input_tokens"],
            output_tokens=r["output_tokens"],
            reasoning_tokens=r["reasoning_tokens"],
            tool_calls=r["tool_calls"],
            cost_usd=from_pico(r["cost_pico"]),
        )
        for r in rows
        if r["requests"]
    ]
    return Drill(path, level, sorted(out, key=lambda r: (-r.cost_usd, -r.requests, r.value)))


__all__ = ["LEVELS", "Drill", "DrillRow", "drilldown"]
