"""Golden cases: calls billed along every dimension, through the proxy against mock providers
that report usage as the real ones do, streamed and not. Each expected cost is worked out here
from the bundled map's own rates (tests/costing/test_dimensions.py reads the JSON)."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal

import pytest

from meterline.costing import BILLING_COLUMNS, EVENT_COLUMNS
from meterline.costing.money import to_pico
from tests.conftest import PROVIDER_KEY, run_cli
from tests.costing.test_dimensions import rate
from tests.proxy.test_chat import client

MODELS = [
    {"name": "gpt-5", "provider": "sim"},
    {"name": "gemini-2.5-pro", "provider": "gemini", "upstream_model": "gemini/gemini-2.5-pro"},
    {"name": "gpt-audio", "provider": "sim"},
]
CLAUDE = [{"name": "claude-haiku", "provider": "claude", "upstream_model": "anthropic/claude-haiku-4-5"}]


@pytest.fixture
def billing_proxy(make_proxy, upstream):
    return make_proxy(
        providers={
            "sim": {"base_url": upstream.url + "/v1", "api_key_env": "SIM_API_KEY"},
            # Gemini's OpenAI-compatible endpoint reports usage in OpenAI's shape.
            "gemini": {"base_url": upstream.url + "/v1", "api_key_env": "SIM_API_KEY"},
        },
        models=MODELS,
        prices=[],
    )


@pytest.fixture
def claude_proxy(make_proxy, upstream):
    """Anthropic's Messages API through a `kind: litellm` provider (the client speaks OpenAI)."""
    import meterline.proxy.litellm_provider  # noqa: F401 - slow the first time: not within the start-up wait

    return make_proxy(
        providers={"claude": {"kind": "litellm", "base_url": upstream.url, "api_key_env": "SIM_API_KEY", "read_timeout": 5}},
        models=CLAUDE,
        prices=[],
    )


def chat(proxy, model, text, stream):
    c = client(proxy, proxy.key())
    messages = [{"role": "user", "content": text}]
    if not stream:
        return c.chat.completions.create(model=model, messages=messages).usage
    usage = None
    for chunk in c.chat.completions.create(model=model, messages=messages, stream=True, stream_options={"include_usage": True}):
        usage = chunk.usage or usage
    return usage


def only_event(proxy):
    (event,) = proxy.events()
    return event


def assert_cost(event, expected: Decimal):
    assert event["cost_pico"] == to_pico(expected), (event["cost_pico"], expected)
    assert event["priced"] and event["usage_source"] == "reported"


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("tier", "directive"), [("default", ""), ("priority", ",tier=1"), ("flex", ",tier=2")])
def test_gpt5_is_billed_at_the_tier_the_response_reports(billing_proxy, stream, tier, directive):
    usage = chat(billing_proxy, "gpt-5", f"hi sim:cached=4,reasoning=6{directive}", stream)
    event = only_event(billing_proxy)
    suffix = "" if tier == "default" else f"_{tier}"
    p, c = usage.prompt_tokens, usage.completion_tokens
    expected = (
        (p - 4) * rate("gpt-5", f"input_cost_per_token{suffix}")
        + 4 * rate("gpt-5", f"cache_read_input_token_cost{suffix}")
        + c * rate("gpt-5", f"output_cost_per_token{suffix}")
    )
    assert_cost(event, expected)
    assert (event["service_tier"], event["usage_flag"]) == (tier, "")
    assert (event["input_tokens"], event["cached_input_tokens"], event["output_tokens"], event["reasoning_tokens"]) == (p, 4, c, 6)
    assert event["price_version"] == "litellm-1.108.7:gpt-5" or event["price_version"].endswith(":gpt-5")


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("prompt", [200_000, 250_000])
def test_gemini_25_pro_above_200k_prompt_tokens_reprices_the_whole_call(billing_proxy, stream, prompt):
    chat(billing_proxy, "gemini-2.5-pro", f"long sim:prompt_tokens={prompt},cached=1000", stream)
    event = only_event(billing_proxy)
    m = "gemini/gemini-2.5-pro"
    above = "_above_200k_tokens" if prompt > 200_000 else ""
    expected = (
        (prompt - 1000) * rate(m, f"input_cost_per_token{above}")
        + 1000 * rate(m, f"cache_read_input_token_cost{above}")
        + event["output_tokens"] * rate(m, f"output_cost_per_token{above}")
    )
    assert_cost(event, expected)
    assert event["input_tokens"] == prompt
    assert event["long_context_above"] == (200_000 if above else 0)


@pytest.mark.parametrize("stream", [False, True])
def test_audio_tokens_in_and_out_are_billed_at_the_audio_rates(billing_proxy, stream):
    usage = chat(billing_proxy, "gpt-audio", "speak sim:audio_in=30,audio_out=12,chunks=10", stream)
    event = only_event(billing_proxy)
    m = "gpt-audio"
    p, c = usage.prompt_tokens, usage.completion_tokens
    expected = (
        (p - 30) * rate(m, "input_cost_per_token")
        + 30 * rate(m, "input_cost_per_audio_token")
        + (c - 12) * rate(m, "output_cost_per_token")
        + 12 * rate(m, "output_cost_per_audio_token")
    )
    assert_cost(event, expected)
    assert (event["input_audio_tokens"], event["output_audio_tokens"]) == (30, 12)
    assert event["cost_detail"].count("=") == 4


@pytest.mark.parametrize("stream", [False, True])
def test_a_responses_call_with_two_web_searches_bills_each_search(billing_proxy, stream):
    c = client(billing_proxy, billing_proxy.key())
    if stream:
        with c.responses.stream(model="gpt-5", input="find it sim:web_search=2") as s:
            usage = s.get_final_response().usage
    else:
        usage = c.responses.create(model="gpt-5", input="find it sim:web_search=2").usage
    event = only_event(billing_proxy)
    per_query = rate("gpt-5", "search_context_cost_per_query")["search_context_size_medium"]
    expected = (
        usage.input_tokens * rate("gpt-5", "input_cost_per_token")
        + usage.output_tokens * rate("gpt-5", "output_cost_per_token")
        + 2 * per_query
    )
    assert_cost(event, expected)
    assert event["web_search_calls"] == 2 and event["usage_flag"] == ""
    assert f"web_search={to_pico(2 * per_query)}" in event["cost_detail"]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("write_1h", [0, 200])
def test_claude_5_minute_and_1_hour_cache_writes_through_litellm(claude_proxy, upstream, stream, write_1h):
    split = f",write_hour={write_1h}" if write_1h else ""
    usage = chat(claude_proxy, "claude-haiku", f"hello sim:cached=100,cache_write=300{split}", stream)
    (sent,) = [r for r in upstream.requests if r["path"] == "/v1/messages"][-1:]
    assert sent["headers"]["x-api-key"] == PROVIDER_KEY
    event = only_event(claude_proxy)
    m = "claude-haiku-4-5"
    fresh = usage.prompt_tokens - 100 - 300
    expected = (
        fresh * rate(m, "input_cost_per_token")
        + 100 * rate(m, "cache_read_input_token_cost")
        + (300 - write_1h) * rate(m, "cache_creation_input_token_cost")
        + write_1h * rate(m, "cache_creation_input_token_cost_above_1hr")
        + usage.completion_tokens * rate(m, "output_cost_per_token")
    )
    assert_cost(event, expected)
    assert (event["cache_write_tokens"], event["cache_write_1h_tokens"]) == (300, write_1h)
    assert event["service_tier"] == "default" and event["usage_flag"] == ""


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_web_searches_without_a_price_are_counted_and_flagged_partly_priced(claude_proxy, stream):
    usage = chat(claude_proxy, "claude-haiku", "look up sim:web_search=3", stream)
    event = only_event(claude_proxy)
    m = "claude-haiku-4-5"  # the bundled map has no search price for it
    assert event["web_search_calls"] == 3 and event["usage_flag"] == "partly_priced"
    assert_cost(event, usage.prompt_tokens * rate(m, "input_cost_per_token") + usage.completion_tokens * rate(m, "output_cost_per_token"))


def test_showback_and_the_events_export_break_costs_down_by_dimension(billing_proxy):
    chat(billing_proxy, "gpt-5", "plain text", False)
    chat(billing_proxy, "gpt-5", "fast sim:tier=1", False)
    chat(billing_proxy, "gpt-audio", "speak sim:audio_in=30,audio_out=12,chunks=10", True)
    client(billing_proxy, billing_proxy.key()).responses.create(model="gpt-5", input="find sim:web_search=2")
    events = {(e["model"], e["service_tier"], e["web_search_calls"]): e for e in billing_proxy.events()}
    period = next(iter(events.values()))["charge_period"]
    cfg = str(billing_proxy.config_path)

    sb = json.loads(run_cli("report", "showback", "--month", period, "--json", "--config", cfg).stdout)
    dims = {k: Decimal(v) for k, v in sb["cost_by_dimension"].items()}
    assert sum(dims.values()) == Decimal(sb["total_usd"]) == sum(Decimal(e["cost_pico"]) for e in events.values()) / 10**12
    assert dims["text"] == Decimal(events[("gpt-5", "default", 0)]["cost_pico"]) / 10**12
    assert dims["web_search"] == 2 * rate("gpt-5", "search_context_cost_per_query")["search_context_size_medium"]
    assert {"input_audio", "output_audio"} <= set(dims)
    assert Decimal(sb["cost_by_service_tier"]["priority"]) == Decimal(events[("gpt-5", "priority", 0)]["cost_pico"]) / 10**12

    rows = list(csv.DictReader(io.StringIO(run_cli("export", "events", "--month", period, "--config", cfg).stdout)))
    header = list(rows[0])
    assert header[: len(EVENT_COLUMNS)] == EVENT_COLUMNS and set(BILLING_COLUMNS) <= set(header[len(EVENT_COLUMNS) :])
    audio = next(r for r in rows if r["model"] == "gpt-audio")
    assert (audio["input_audio_tokens"], audio["output_audio_tokens"], audio["service_tier"]) == ("30", "12", "default")
