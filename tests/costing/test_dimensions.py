"""Pricing by dimension: each count at its own rate, tiers and context tiers, exactly.

Expected costs are computed here by hand from litellm's bundled map, read as JSON.
"""

from __future__ import annotations

import importlib.util
import json
from decimal import Decimal
from functools import cache
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from meterline.costing import PriceBook, Usage, breakdown, cost_of
from meterline.costing.config import PriceConfig
from meterline.costing.money import (
    COUNT_FIELDS,
    INVALID_USAGE,
    MAX_CALL_COST,
    PARTLY_PRICED,
    capped,
    priced,
)


@cache
def bundled() -> dict:
    spec = importlib.util.find_spec("litellm")
    path = Path(next(iter(spec.submodule_search_locations))) / "model_prices_and_context_window_backup.json"
    return json.loads(path.read_text(), parse_float=Decimal)


def rate(model: str, field: str) -> Decimal:
    return bundled()[model][field]


BOOK = PriceBook()


def test_gpt5_is_billed_at_the_tier_the_response_reports():
    p = BOOK.lookup("gpt-5")
    u = dict(input_tokens=1000, cached_input_tokens=200, output_tokens=300, reasoning_tokens=100)
    for tier, suffix in (("", ""), ("priority", "_priority"), ("flex", "_flex")):
        want = (
            800 * rate("gpt-5", f"input_cost_per_token{suffix}")
            + 200 * rate("gpt-5", f"cache_read_input_token_cost{suffix}")
            + 300 * rate("gpt-5", f"output_cost_per_token{suffix}")
        )
        b = breakdown(Usage.of(**u, service_tier=tier), p)
        assert b.total == cost_of(Usage.of(**u, service_tier=tier), p) == want
        assert b.tier == (tier or "default") and b.flag == ""


def test_gemini_25_pro_above_200k_reprices_the_whole_call():
    p = BOOK.lookup("gemini/gemini-2.5-pro")
    m = "gemini/gemini-2.5-pro"
    below = Usage.of(input_tokens=200_000, output_tokens=1000)
    assert cost_of(below, p) == 200_000 * rate(m, "input_cost_per_token") + 1000 * rate(m, "output_cost_per_token")
    above = Usage.of(input_tokens=200_001, cached_input_tokens=1, output_tokens=1000)
    b = breakdown(above, p)
    assert b.above == 200_000
    assert b.total == (
        200_000 * rate(m, "input_cost_per_token_above_200k_tokens")
        + 1 * rate(m, "cache_read_input_token_cost_above_200k_tokens")
        + 1000 * rate(m, "output_cost_per_token_above_200k_tokens")
    )


def test_claude_one_hour_cache_writes_have_their_own_rate():
    m = "claude-haiku-4-5"
    u = Usage.of(input_tokens=1500, cached_input_tokens=300, cache_write_tokens=500, cache_write_1h_tokens=200, output_tokens=40)
    b = breakdown(u, BOOK.lookup(m))
    assert b.parts == {
        "input": 700 * rate(m, "input_cost_per_token"),
        "cached_input": 300 * rate(m, "cache_read_input_token_cost"),
        "cache_write": 300 * rate(m, "cache_creation_input_token_cost"),
        "cache_write_1h": 200 * rate(m, "cache_creation_input_token_cost_above_1hr"),
        "output": 40 * rate(m, "output_cost_per_token"),
    }
    assert b.flag == ""


def test_audio_tokens_in_and_out_have_their_own_rates():
    m = "gpt-audio"
    u = Usage.of(input_tokens=500, input_audio_tokens=300, output_tokens=400, output_audio_tokens=350)
    assert cost_of(u, BOOK.lookup(m)) == (
        200 * rate(m, "input_cost_per_token")
        + 300 * rate(m, "input_cost_per_audio_token")
        + 50 * rate(m, "output_cost_per_token")
        + 350 * rate(m, "output_cost_per_audio_token")
    )


def test_web_searches_are_billed_per_use():
    m = "gpt-5"
    u = Usage.of(input_tokens=100, output_tokens=10, web_search_calls=2)
    b = breakdown(u, BOOK.lookup(m))
    assert b.parts["web_search"] == 2 * rate(m, "search_context_cost_per_query")["search_context_size_medium"]


def test_a_count_without_a_rate_is_priced_at_the_nearest_known_one_and_flagged():
    m = "gpt-4o-mini"  # no audio rates, no file search price, no flex tier
    p = BOOK.lookup(m)
    u = Usage.of(input_tokens=100, input_audio_tokens=40, output_tokens=10)
    cost, flag = priced(u, p)
    assert cost == 100 * rate(m, "input_cost_per_token") + 10 * rate(m, "output_cost_per_token")
    assert flag == PARTLY_PRICED
    assert priced(Usage.of(input_tokens=1, file_search_calls=3), p)[1] == PARTLY_PRICED
    flex = breakdown(Usage.of(input_tokens=10, service_tier="flex"), p)
    assert (flex.tier, flex.flag) == ("default", PARTLY_PRICED)
    assert priced(Usage.of(input_tokens=10, output_tokens=5), p)[1] == ""


def test_overrides_set_every_rate():
    book = PriceBook(
        [
            PriceConfig.model_validate(
                {
                    "model": "m",
                    "input_per_mtok": 1,
                    "output_per_mtok": 4,
                    "cache_write_1h_per_mtok": 2,
                    "input_audio_per_mtok": 40,
                    "output_image_per_mtok": 30,
                    "tiers": {"priority": {"input_per_mtok": 2, "output_per_mtok": 8}},
                    "long_context": [{"above_input_tokens": 1000, "input_per_mtok": 3, "output_per_mtok": 6}],
                    "web_search_per_1k_calls": 10,
                }
            )
        ],
        bundled={},
    )
    p = book.lookup("m")
    mt = Decimal(1_000_000)
    assert cost_of(Usage.of(input_tokens=100, output_tokens=10, service_tier="priority"), p) == (200 + 80) / mt
    assert cost_of(Usage.of(input_tokens=1001, output_tokens=10), p) == (3003 + 60) / mt
    u = Usage.of(input_tokens=100, cache_write_tokens=50, cache_write_1h_tokens=50, input_audio_tokens=10, output_tokens=20, output_image_tokens=20, web_search_calls=3)
    assert cost_of(u, p) == (40 * 1 + 50 * 2 + 10 * 40 + 20 * 30) / mt + 3 * Decimal(10) / 1000


def test_a_cost_no_call_could_have_is_capped_and_flagged():
    assert capped(MAX_CALL_COST * 2, "") == (MAX_CALL_COST, INVALID_USAGE)
    assert capped(Decimal(1), "") == (Decimal(1), "")


MODELS = ["gpt-5", "gemini/gemini-2.5-pro", "claude-haiku-4-5", "gpt-audio", "gpt-4o-mini", "gpt-5.4", "gpt-image-1"]
counts = st.integers(min_value=0, max_value=400_000)


@given(
    st.sampled_from(MODELS),
    st.sampled_from(["", "priority", "flex", "scale"]),
    st.lists(counts, min_size=13, max_size=13),
)
def test_a_calls_cost_is_the_sum_of_its_dimensions_costs_exactly(model, tier, n):
    u = Usage.of(*n[:5], **dict(zip(COUNT_FIELDS[5:], (v % 1000 for v in n[5:]), strict=True)), service_tier=tier)
    p = BOOK.lookup(model)
    b = breakdown(u, p)
    assert cost_of(u, p) == sum(b.parts.values()) == b.total
    assert all(v >= 0 for v in b.parts.values())
    # The fast path for text-only calls agrees with the breakdown.
    plain = Usage.of(*n[:5])
    assert priced(plain, p)[0] == breakdown(plain, p).total
