"""A month's cost by billed dimension: service tiers, long context, cache writes by TTL, audio
and image tokens, server-side tools, and the calls whose usage was flagged.

Only the calls billed along more than text carry a breakdown (`cost_detail`, read through a
partial index); the rest of the month's cost is text at the default tier, so the parts add up
exactly to the ledger total. Nothing is priced here: the parts are the pico-dollars stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

import sqlalchemy as sa

from meterline.costing import ZERO, from_pico, parse_detail
from meterline.costing.tables import DETAILED

from .ledger_queries import EVENTS

TEXT = "text"  # the cost of calls billed as text only, at the default tier

# What people read for each dimension of `cost_detail` (statement, dashboard).
LABELS = {
    TEXT: "Text, standard rates",
    "input": "Input tokens",
    "cached_input": "Cached input tokens",
    "cache_write": "Cache writes (5 minutes)",
    "cache_write_1h": "Cache writes (1 hour)",
    "input_audio": "Audio input tokens",
    "input_image": "Image input tokens",
    "output": "Output tokens",
    "reasoning": "Reasoning tokens",
    "output_audio": "Audio output tokens",
    "output_image": "Image output tokens",
    "web_search": "Web searches",
    "file_search": "File searches",
    "code_interpreter": "Code interpreter sessions",
}


def label(dimension: str) -> str:
    return LABELS.get(dimension, dimension.replace("_", " ").capitalize())


@dataclass
class DimensionCosts:
    by_dimension: dict[str, Decimal] = field(default_factory=dict)  # USD; TEXT for text-only calls
    by_service_tier: dict[str, Decimal] = field(default_factory=dict)
    long_context_usd: Decimal = ZERO  # calls whose prompt passed a context threshold (whole cost)
    flagged_requests: dict[str, int] = field(default_factory=dict)  # usage_flag -> calls

    @property
    def billed_beyond_text(self) -> bool:
        """Whether any of the cost is more than text at the default tier (worth a breakdown)."""
        return any(k != TEXT and v for k, v in self.by_dimension.items()) or bool(self.long_context_usd) or any(
            k != "default" and v for k, v in self.by_service_tier.items()
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "cost_by_dimension": {k: str(v) for k, v in self.by_dimension.items()},
            "cost_by_service_tier": {k: str(v) for k, v in self.by_service_tier.items()},
            "long_context_usd": str(self.long_context_usd),
            "flagged_requests": dict(self.flagged_requests),
        }


def dimension_costs(
    engine: sa.Engine, period: str, total: Decimal, where: dict[str, str | list[str]] | None = None
) -> DimensionCosts:
    """The month's cost by dimension; `total` is the month's ledger cost (what text makes up
    the rest of); `where`: column -> value (or values) filters (e.g. a department)."""
    t = EVENTS
    q = sa.select(t.c.cost_detail, t.c.service_tier, t.c.long_context_above, t.c.usage_flag, t.c.cost_pico).where(
        t.c.charge_period == period, sa.text(DETAILED)
    )
    for col, value in (where or {}).items():
        q = q.where(t.c[col].in_(value) if isinstance(value, list) else t.c[col] == value)
    parts: dict[str, int] = {}
    tiers: dict[str, int] = {}
    flagged: dict[str, int] = {}
    long_pico = detailed_pico = 0
    with engine.connect() as conn:
        for detail, tier, above, flag, pico in conn.execute(q):
            if detail:
                detailed_pico += pico
                for k, v in parse_detail(detail).items():
                    parts[k] = parts.get(k, 0) + v
                if tier and tier != "default":
                    tiers[tier] = tiers.get(tier, 0) + pico
                if above:
                    long_pico += pico
            for f in flag.split(",") if flag else ():
                flagged[f] = flagged.get(f, 0) + 1
    out = DimensionCosts(flagged_requests=dict(sorted(flagged.items())), long_context_usd=from_pico(long_pico))
    detailed = from_pico(detailed_pico)
    # A capped call's parts add up to more than it was recorded at: the stored cost wins.
    by_dim = {k: from_pico(v) for k, v in sorted(parts.items(), key=lambda kv: -kv[1]) if v}
    text = total - detailed
    if text:
        out.by_dimension[TEXT] = text
    out.by_dimension.update(by_dim)
    non_default = sum(tiers.values())
    if total - from_pico(non_default):
        out.by_service_tier["default"] = total - from_pico(non_default)
    out.by_service_tier.update({k: from_pico(v) for k, v in sorted(tiers.items())})
    return out


__all__ = ["LABELS", "DimensionCosts", "TEXT", "dimension_costs", "label"]
