from __future__ import annotations

from datetime import date
from decimal import Decimal

from meterline.costing import PriceBook
from meterline.costing.config import PriceConfig


def test_bundled_litellm_map_is_read_without_network():
    p = PriceBook().lookup("gpt-4o-mini")
    assert p is not None and p.version.startswith("litellm-")
    assert p.input == Decimal("1.5E-7")  # exact, not a float


def test_dated_overrides_apply_from_their_day_on():
    book = PriceBook(
        [
            PriceConfig(model="m", input_per_mtok=Decimal(1), output_per_mtok=Decimal(2), effective_from=date(2026, 1, 1)),
            PriceConfig(model="m", input_per_mtok=Decimal(3), output_per_mtok=Decimal(4), effective_from=date(2026, 6, 1)),
        ],
        bundled={},
    )
    assert book.lookup("m", at=date(2025, 12, 31)) is None
    assert book.lookup("m", at=date(2026, 5, 31)).input * 1_000_000 == 1
    assert book.lookup("m", at=date(2026, 6, 1)).input * 1_000_000 == 3


def test_unknown_model_has_no_price():
    assert PriceBook(bundled={}).lookup("no-such-model") is None
