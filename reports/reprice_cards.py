"""Reprice with a new rate card: what each department's charge would be in a past month
(dry run, nothing written).

The month's chargeback is computed from the ledger twice, with the configured rate cards and
with the new ones (a file with a `rate_cards:` list, as in the config, replacing the
configured cards of the departments it names). A closed month is computed from the ledger too,
never from its snapshot: the answer is what the new card would have billed.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml

from meterline.costing import ConfigError, Settings, settings_from_dict
from meterline.costing.chargeback import compute, line_sums
from meterline.costing.credit_ledger import period_credits
from meterline.costing.rate_cards import rated_lines


@dataclass
class CardRow:
    department: str
    cost_usd: Decimal
    charge_usd: Decimal  # with the configured cards
    new_charge_usd: Decimal  # with the new ones

    @property
    def diff_usd(self) -> Decimal:
        return self.new_charge_usd - self.charge_usd


@dataclass
class CardReprice:
    period: str
    rows: list[CardRow]

    def as_dict(self) -> dict[str, Any]:
        return {
            "period": self.period,
            "charge_usd": str(sum((r.charge_usd for r in self.rows), Decimal(0))),
            "new_charge_usd": str(sum((r.new_charge_usd for r in self.rows), Decimal(0))),
            "rows": [
                {"department": r.department, "cost_usd": str(r.cost_usd), "charge_usd": str(r.charge_usd),
                 "new_charge_usd": str(r.new_charge_usd), "diff_usd": str(r.diff_usd)}
                for r in self.rows
            ],
        }  # fmt: skip


def with_cards(settings: Settings, path: Path) -> Settings:
    """`settings` with the rate cards of the file at `path` (ConfigError naming the file)."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"cannot read rate cards: {type(e).__name__}", path=str(path)) from None
    cards = raw.get("rate_cards") if isinstance(raw, dict) else None
    if not isinstance(cards, list):
        raise ConfigError("expected a `rate_cards:` list", path=str(path))
    named = {c.get("department") for c in cards if isinstance(c, dict)}
    kept = [c.model_dump(mode="json", exclude_none=True) for c in settings.rate_cards if c.department not in named]
    base = settings.model_dump(mode="json", exclude_none=True, exclude={"path"})
    return settings_from_dict({**base, "rate_cards": kept + cards}, path=str(path), environ={})


def reprice_cards(engine: sa.Engine, settings: Settings, period: str, new: Settings) -> CardReprice:
    sums = line_sums(engine, period)
    credits = period_credits(engine, settings, period)
    now = compute([dict(r) for r in sums], settings, period, credits, rated_lines(engine, settings, period))
    then = compute([dict(r) for r in sums], new, period, credits, rated_lines(engine, new, period))
    old = {d.department: d for d in now.departments}
    rows = [
        CardRow(d.department, d.cost_usd, old[d.department].charge_usd if d.department in old else Decimal(0), d.charge_usd)
        for d in then.departments
    ]
    return CardReprice(period, rows)


__all__ = ["CardReprice", "CardRow", "reprice_cards", "with_cards"]
