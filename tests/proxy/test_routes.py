"""Responses API, embeddings, legacy completions and tool calling through the proxy, with the real openai SDK."""

from __future__ import annotations

from decimal import Decimal

import httpx
import orjson
import pytest

from tests.conftest import PROVIDER_KEY
from tests.proxy.test_chat import client

PRICE = {"input": Decimal("0.15"), "cached": Decimal("0.075"), "output": Decimal("0.60")}


def cost_usd(event):
    return Decimal(event["cost_pico"]) / 10**12


def expected_cost(inp, cached, out):
    return ((inp - cached) * PRICE["input"] + cached * PRICE["cached"] + out * PRICE["output"]) / 1_000_000


def test_responses_non_stream_is_metered_from_its_usage_details(proxy):
    raw = client(proxy, proxy.key()).responses.with_raw_response.create(
        model="gpt-4o-mini", input="tell me sim:cached=2,reasoning=3"
    )
    resp = raw.parse()
    (event,) = proxy.events()
    assert resp.output_text
    assert event["input_tokens"] == resp.usage.input_tokens > 0
    assert event["cached_input_tokens"] == resp.usage.input_tokens_details.cached_tokens == 2
    assert event["output_tokens"] == resp.usage.output_tokens > 0
    assert event["reasoning_tokens"] == resp.usage.output_tokens_details.reasoning_tokens == 3
    assert (event["kind"], event["status"], event["usage_source"], event["method"]) == ("llm", "ok", "reported", "/responses")
    assert cost_usd(event) == expected_cost(event["input_tokens"], 2, event["output_tokens"])
    assert Decimal(raw.headers["x-meterline-cost-usd"]) == cost_usd(event)


def test_responses_stream_is_metered_from_response_completed(proxy):
    events = list(
        client(proxy, proxy.key()).responses.create(model="gpt-4o-mini", input="go sim:chunks=6,cached=1", stream=True)
    )
    (done,) = [e for e in events if e.type == "response.completed"]
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    (event,) = proxy.events()
    assert text == done.response.output_text
    assert event["input_tokens"] == done.response.usage.input_tokens
    assert event["output_tokens"] == done.response.usage.output_tokens == 12
    assert event["cached_input_tokens"] == 1
    assert (event["status"], event["usage_source"]) == ("ok", "reported")
    assert cost_usd(event) == expected_cost(event["input_tokens"], 1, 12)


def test_embeddings_are_metered_as_kind_embedding(proxy):
    raw = client(proxy, proxy.key("web")).embeddings.with_raw_response.create(
        model="text-embedding-3-small", input=["one two three", "four five"]
    )
    result = raw.parse()
    (event,) = proxy.events()
    assert len(result.data) == 2
    assert (event["kind"], event["status"], event["team"]) == ("embedding", "ok", "web")
    assert event["input_tokens"] == result.usage.prompt_tokens == 5
    assert event["output_tokens"] == 0
    assert raw.headers["x-meterline-call-id"] == event["call_id"]


@pytest.mark.parametrize("stream", [False, True])
def test_legacy_completions_are_metered(proxy, stream):
    c = client(proxy, proxy.key())
    if stream:
        chunks = list(c.completions.create(model="gpt-4o-mini", prompt="once upon sim:chunks=5", stream=True))
        text = "".join(ch.choices[0].text for ch in chunks if ch.choices)
        assert all(ch.usage is None for ch in chunks)  # asked for by the proxy, not passed on
    else:
        text = c.completions.create(model="gpt-4o-mini", prompt="once upon sim:chunks=5").choices[0].text
    (event,) = proxy.events()
    assert text
    assert (event["kind"], event["status"], event["usage_source"], event["method"]) == ("llm", "ok", "reported", "/completions")
    assert event["input_tokens"] == 3 and event["output_tokens"] == 10


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            "strict": True,
        },
    }
]


def _strip_volatile(doc):
    """Ids and timestamps differ between two calls to the simulator; everything else must not."""
    doc = dict(doc)
    for k in ("id", "created"):
        doc.pop(k, None)
    for choice in doc.get("choices", ()):
        for tc in choice.get("message", {}).get("tool_calls") or ():
            tc.pop("id")
    return doc


def test_tool_calls_pass_through_untouched(proxy, upstream):
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "weather in Oslo?"}],
        "tools": TOOLS,
        "tool_choice": "auto",
    }
    direct = httpx.post(upstream.url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {PROVIDER_KEY}"})
    upstream.requests.clear()
    raw = client(proxy, proxy.key()).chat.completions.with_raw_response.create(**body)
    (sent,) = [r for r in upstream.requests if r["path"] == "/v1/chat/completions"]
    via_proxy = orjson.loads(raw.http_response.content)
    assert sent["json"]["tools"] == TOOLS and sent["json"]["tool_choice"] == "auto"
    assert _strip_volatile(via_proxy) == _strip_volatile(direct.json())
    assert via_proxy["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "get_weather"
    (event,) = proxy.events()
    assert event["output_tokens"] == via_proxy["usage"]["completion_tokens"]


def test_streamed_tool_call_deltas_reach_the_client(proxy):
    chunks = list(
        client(proxy, proxy.key()).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "weather?"}], tools=TOOLS, stream=True
        )
    )
    calls = [tc for ch in chunks if ch.choices for tc in ch.choices[0].delta.tool_calls or ()]
    assert calls[0].function.name == "get_weather"
    assert "".join(tc.function.arguments or "" for tc in calls) == '{"city":"weather?"}'  # the simulator's, from the prompt
    (event,) = proxy.events()
    assert (event["status"], event["usage_source"]) == ("ok", "reported")
