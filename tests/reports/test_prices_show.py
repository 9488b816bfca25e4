"""`meterline prices show`: every rate of every version, tiers and context tiers included."""

from __future__ import annotations

from decimal import Decimal

from meterline.costing import PriceBook
from meterline.reports.prices import price_versions, prices_table


def test_every_rate_of_a_bundled_price_is_listed():
    (v,) = price_versions(PriceBook(), "gemini/gemini-2.5-pro")
    assert ("priority", "input", Decimal("2.25")) in v.rates
    assert ("above 200000", "input", Decimal("2.5")) in v.rates
    assert ("above 200000 priority", "output", Decimal(27)) in v.rates
    assert ("per 1,000 uses", "web_search", Decimal(35)) in v.rates
    table = prices_table("claude-haiku-4-5", price_versions(PriceBook(), "claude-haiku-4-5"))
    assert "other rates: cache_write_1h 2" in table
