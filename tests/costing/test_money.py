from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from meterline.costing import Price, Usage, cost_of, exact, from_pico, largest_remainder
from meterline.costing.money import to_pico


def test_cached_tokens_are_a_subset_of_input_and_reasoning_of_output():
    p = Price.per_mtok("m", Decimal("2.50"), Decimal("10"), Decimal("1.25"), version="t")
    c = cost_of(Usage(input_tokens=1000, cached_input_tokens=400, output_tokens=200, reasoning_tokens=150), p)
    assert c == (600 * Decimal("2.50") + 400 * Decimal("1.25") + 200 * Decimal("10")) / 1_000_000


def test_anthropic_cache_writes_are_priced_at_their_own_rate():
    p = Price.per_mtok("m", Decimal("3"), Decimal("15"), Decimal("0.30"), Decimal("3.75"), version="t")
    c = cost_of(Usage(input_tokens=1000, cached_input_tokens=200, cache_write_tokens=300, output_tokens=10), p)
    assert c == (500 * 3 + 200 * Decimal("0.30") + 300 * Decimal("3.75") + 10 * 15) / Decimal(1_000_000)


def test_pico_storage_is_exact_for_per_token_prices():
    amount = Decimal("0.000000075") * 7 + Decimal("0.00000015")
    assert from_pico(to_pico(amount)) == amount
    assert exact(from_pico(to_pico(amount))) == "0.000000675"


amounts = st.lists(st.decimals(min_value=0, max_value=10_000, places=12), min_size=1, max_size=40)


@given(amounts, st.sampled_from([2, 6]))
def test_largest_remainder_parts_add_up_to_the_rounded_total(values, places):
    parts = largest_remainder(values, places)
    unit = Decimal(1).scaleb(-places)
    assert sum(parts) == sum(values).quantize(unit)
    assert all(abs(p - v) < unit for p, v in zip(parts, values, strict=True))
