"""Reprice: what the current price book would change in a month, before it is closed (dry run).

Every LLM and embedding event of the month is priced again with the price in force at its
time in today's book (the config's `prices:` plus the bundled map) and compared with the cost
stored on it. MCP calls, failed and rejected calls keep their cost. Nothing is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

import sqlalchemy as sa

from meterline.costing import (
    PICO,
    ZERO,
    PeriodClosed,
    PriceBook,
    Settings,
    Usage,
    cost_of,
    from_pico,
    is_closed,
)
from meterline.costing.money import COUNT_FIELDS

from .ledger_queries import events

KEEP_COST = {"upstream_error", "rejected"}


@dataclass
class RepriceRow:
    department: str
    model: str
    requests: int = 0
    changed: int = 0  # events whose cost would change
    old_usd: Decimal = ZERO
    new_usd: Decimal = ZERO
    versions: set[tuple[str, str]] = field(default_factory=set)  # (stored, today's) price versions that differ

    @property
    def diff_usd(self) -> Decimal:
        return self.new_usd - self.old_usd


@dataclass
class Reprice:
    period: str
    rows: list[RepriceRow]

    @property
    def old_usd(self) -> Decimal:
        return sum((r.old_usd for r in self.rows), ZERO)

    @property
    def new_usd(self) -> Decimal:
        return sum((r.new_usd for r in self.rows), ZERO)

    @property
    def changed(self) -> int:
        return sum(r.changed for r in self.rows)

    def as_dict(self) -> dict[str, object]:
        return {
            "period": self.period,
            "old_usd": str(self.old_usd),
            "new_usd": str(self.new_usd),
            "diff_usd": str(self.new_usd - self.old_usd),
            "changed": self.changed,
            "rows": [
                {
                    "department": r.department,
                    "model": r.model,
                    "requests": r.requests,
                    "changed": r.changed,
                    "old_usd": str(r.old_usd),
                    "new_usd": str(r.new_usd),
                    "diff_usd": str(r.diff_usd),
                    "versions": sorted(f"{a} -> {b}" for a, b in r.versions),
                }
                for r in self.rows
            ],
        }


def reprice(engine: sa.Engine, settings: Settings, period: str, book: PriceBook | None = None) -> Reprice:
    """Old and new cost per department and model. Raises PeriodClosed for a closed month."""
    if is_closed(engine, period):
        raise PeriodClosed(f"{period} is closed: its chargeback is final; a price correction applies to open months only")
    book = book or PriceBook(settings.prices)
    # As the proxy prices: the model's own name first, then the provider's name for it.
    upstream = {n: m.upstream_model for m in settings.models if m.upstream_model for n in (m.name, *m.aliases)}
    rows: dict[tuple[str, str], RepriceRow] = {}
    for ev in events(engine, period):
        row = rows.setdefault((ev["department"], ev["model"]), RepriceRow(ev["department"], ev["model"]))
        old = from_pico(ev["cost_pico"])
        new, version = old, ev["price_version"]
        if ev["kind"] != "mcp" and ev["status"] not in KEEP_COST:
            names = (ev["model"], upstream[ev["model"]]) if ev["model"] in upstream else (ev["model"],)
            price = book.lookup(*names, at=ev["ts"])
            if price is not None:
                usage = Usage.of(**{f: ev[f] for f in COUNT_FIELDS}, service_tier="" if ev["service_tier"] == "default" else ev["service_tier"])
                new, version = cost_of(usage, price).quantize(PICO), price.version
        row.requests += 1
        row.old_usd += old
        row.new_usd += new
        if new != old:
            row.changed += 1
            row.versions.add((ev["price_version"] or "unpriced", version))
    return Reprice(period, sorted(rows.values(), key=lambda r: (r.department == "", r.department, r.model)))


__all__ = ["Reprice", "RepriceRow", "reprice"]
