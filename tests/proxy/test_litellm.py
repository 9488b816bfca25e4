"""Anthropic through litellm (`kind: litellm`), against the simulator's Messages API; the client speaks OpenAI."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from decimal import Decimal

import openai
import pytest

from tests.conftest import PROVIDER_KEY, ROOT, free_port
from tests.proxy.test_chat import client
from tests.proxy.test_streams import established_to, wait_for_events

PRICE = {"input": Decimal(3), "cached": Decimal("0.30"), "write": Decimal("3.75"), "output": Decimal(15)}


def claude_config(url):
    return dict(
        providers={
            "claude": {"kind": "litellm", "base_url": url, "api_key_env": "SIM_API_KEY", "read_timeout": 1, "connect_timeout": 1}
        },
        models=[{"name": "claude-haiku", "provider": "claude", "upstream_model": "anthropic/claude-3-5-haiku-20241022"}],
        prices=[
            {
                "model": "claude-haiku",
                "input_per_mtok": str(PRICE["input"]),
                "cached_input_per_mtok": str(PRICE["cached"]),
                "cache_write_per_mtok": str(PRICE["write"]),
                "output_per_mtok": str(PRICE["output"]),
            }
        ],
    )


@pytest.fixture
def claude_proxy(make_proxy, upstream):
    return make_proxy(**claude_config(upstream.url))


def expected_cost(event):
    fresh = event["input_tokens"] - event["cached_input_tokens"] - event["cache_write_tokens"]
    return (
        fresh * PRICE["input"]
        + event["cached_input_tokens"] * PRICE["cached"]
        + event["cache_write_tokens"] * PRICE["write"]
        + event["output_tokens"] * PRICE["output"]
    ) / 1_000_000


MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "hello claude sim:cached=40,cache_write=25,chunks=5"},
]


def test_anthropic_non_stream_is_translated_and_metered_with_cache_tokens(claude_proxy, upstream):
    upstream.requests.clear()
    raw = client(claude_proxy, claude_proxy.key()).chat.completions.with_raw_response.create(model="claude-haiku", messages=MESSAGES)
    completion = raw.parse()
    (sent,) = [r for r in upstream.requests if r["path"] == "/v1/messages"]
    assert sent["headers"]["x-api-key"] == PROVIDER_KEY
    assert sent["json"]["model"] == "claude-3-5-haiku-20241022"
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == "alpha beta gamma delta epsilon zeta eta theta alpha beta"
    (event,) = claude_proxy.events()
    assert (event["provider"], event["model"], event["status"], event["usage_source"]) == ("claude", "claude-haiku", "ok", "reported")
    assert event["cached_input_tokens"] == 40 and event["cache_write_tokens"] == 25
    # Anthropic's input_tokens leave out cache reads and writes; the ledger's input includes them.
    assert event["input_tokens"] == completion.usage.prompt_tokens == (2 + 4) + (3 + 4) + 40 + 25
    assert event["output_tokens"] == completion.usage.completion_tokens == 10
    assert Decimal(event["cost_pico"]) / 10**12 == expected_cost(event) > 0
    assert Decimal(raw.headers["x-meterline-cost-usd"]) == expected_cost(event)
    assert raw.headers["x-meterline-call-id"] == event["call_id"]


@pytest.mark.parametrize("include_usage", [False, True])
def test_anthropic_stream_is_openai_sse_and_metered_with_cache_tokens(claude_proxy, include_usage):
    kwargs = {"stream_options": {"include_usage": True}} if include_usage else {}
    chunks = list(
        client(claude_proxy, claude_proxy.key("web")).chat.completions.create(
            model="claude-haiku", messages=MESSAGES, stream=True, **kwargs
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    usage_chunks = [c for c in chunks if c.usage is not None]
    (event,) = claude_proxy.events()
    assert text == "alpha beta gamma delta epsilon zeta eta theta alpha beta"
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert (event["status"], event["usage_source"], event["team"]) == ("ok", "reported", "web")
    assert (event["cached_input_tokens"], event["cache_write_tokens"], event["output_tokens"]) == (40, 25, 10)
    assert Decimal(event["cost_pico"]) / 10**12 == expected_cost(event)
    assert len(usage_chunks) == (1 if include_usage else 0)
    if include_usage:
        assert usage_chunks[0].usage.prompt_tokens == event["input_tokens"]


def test_anthropic_http_error_keeps_its_status_in_openai_shape(claude_proxy):
    with pytest.raises(openai.RateLimitError) as e:
        client(claude_proxy, claude_proxy.key()).chat.completions.create(
            model="claude-haiku", messages=[{"role": "user", "content": "sim:status=429"}]
        )
    assert e.value.status_code == 429
    assert set(e.value.body) >= {"message", "type", "code"}
    (event,) = claude_proxy.events()
    assert (event["status"], event["http_status"], event["cost_pico"]) == ("upstream_error", 429, 0)


def test_anthropic_hang_is_504_and_recorded(claude_proxy):
    with pytest.raises(openai.APIStatusError) as e:
        client(claude_proxy, claude_proxy.key()).chat.completions.create(
            model="claude-haiku", messages=[{"role": "user", "content": "sim:hang=1"}]
        )
    assert (e.value.status_code, e.value.code) == (504, "upstream_timeout")
    (event,) = claude_proxy.events()
    assert (event["status"], event["http_status"]) == ("upstream_error", 504)


def test_unreachable_anthropic_is_502(make_proxy):
    down = make_proxy(
        providers={"claude": {"kind": "litellm", "base_url": f"http://127.0.0.1:{free_port()}", "api_key_env": "SIM_API_KEY"}},
        models=[{"name": "claude-haiku", "provider": "claude", "upstream_model": "anthropic/claude-3-5-haiku-20241022"}],
    )
    with pytest.raises(openai.APIStatusError) as e:
        client(down, down.key()).chat.completions.create(model="claude-haiku", messages=[{"role": "user", "content": "x"}])
    assert (e.value.status_code, e.value.code) == (502, "upstream_unavailable")
    (event,) = down.events()
    assert event["status"] == "upstream_error"
    assert e.value.response.headers["x-meterline-call-id"] == event["call_id"]


def test_anthropic_stream_broken_mid_way_is_estimated(claude_proxy):
    got = []
    with pytest.raises(openai.APIError):
        for c in client(claude_proxy, claude_proxy.key()).chat.completions.create(
            model="claude-haiku", messages=[{"role": "user", "content": "go sim:chunks=10,break_after=3"}], stream=True
        ):
            got.extend(c.choices[0].delta.content or "" for _ in [0] if c.choices)
    (event,) = claude_proxy.events()
    assert (event["status"], event["usage_source"]) == ("upstream_error", "estimated")
    assert event["output_tokens"] > 0 and event["cost_pico"] > 0


def test_other_routes_to_a_litellm_provider_are_refused_clearly(claude_proxy):
    with pytest.raises(openai.BadRequestError) as e:
        client(claude_proxy, claude_proxy.key()).completions.create(model="claude-haiku", prompt="x")
    assert "/v1/chat/completions" in e.value.message and "/v1/completions" in e.value.message
    (event,) = claude_proxy.events()
    assert (event["status"], event["http_status"]) == ("rejected", 400)


def test_embeddings_through_litellm_are_metered_as_kind_embedding(make_proxy, upstream):
    proxy = make_proxy(
        providers={"lite": {"kind": "litellm", "base_url": upstream.url + "/v1", "api_key_env": "SIM_API_KEY"}},
        models=[{"name": "lite-embed", "provider": "lite", "upstream_model": "openai/text-embedding-3-small"}],
        prices=[{"model": "lite-embed", "input_per_mtok": "0.02"}],
    )
    result = client(proxy, proxy.key()).embeddings.create(model="lite-embed", input=["one two three", "four"])
    assert [len(d.embedding) for d in result.data] == [8, 8]
    (event,) = proxy.events()
    assert (event["kind"], event["status"], event["usage_source"]) == ("embedding", "ok", "reported")
    assert event["input_tokens"] == result.usage.prompt_tokens == 4
    assert Decimal(event["cost_pico"]) / 10**12 == 4 * Decimal("0.02") / 1_000_000


def test_litellm_is_not_imported_without_a_litellm_provider(tmp_path, upstream):
    from tests.conftest import base_config

    cfg = base_config(tmp_path, upstream.url)
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        from meterline.costing import settings_from_dict
        from meterline.proxy.app import create_app

        async def main():
            app = create_app(settings_from_dict({cfg!r}, environ={{}}))
            async with app.router.lifespan_context(app):
                assert app.state.runtime.litellm is None
            print("litellm" in sys.modules)

        asyncio.run(main())
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_anthropic_stream_the_client_abandons_is_estimated_and_let_go(make_proxy, own_upstream):
    claude_proxy = make_proxy(**claude_config(own_upstream.url))
    port = int(own_upstream.url.rsplit(":", 1)[1])
    stream = client(claude_proxy, claude_proxy.key()).chat.completions.create(
        model="claude-haiku", messages=[{"role": "user", "content": "long sim:chunks=2000,delay_ms=50"}], stream=True
    )
    got = 0
    for c in stream:
        got += bool(c.choices and c.choices[0].delta.content)
        if got == 3:
            break
    assert established_to(port) >= 1
    stream.close()
    (event,) = wait_for_events(claude_proxy)
    assert (event["status"], event["usage_source"]) == ("client_closed", "estimated")
    assert 0 < event["output_tokens"] < 4000 and event["cost_pico"] > 0
    deadline = time.monotonic() + 10
    while established_to(port) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert established_to(port) == 0, "litellm still reads an abandoned stream"


def test_a_model_without_a_prices_entry_is_priced_by_its_upstream_name(make_proxy, upstream):
    proxy = make_proxy(
        providers={"claude": {"kind": "litellm", "base_url": upstream.url, "api_key_env": "SIM_API_KEY"}},
        models=[{"name": "claude-fast", "provider": "claude", "upstream_model": "anthropic/claude-haiku-4-5"}],
        prices=[],
    )
    client(proxy, proxy.key()).chat.completions.create(model="claude-fast", messages=[{"role": "user", "content": "x"}])
    (event,) = proxy.events()
    assert event["model"] == "claude-fast" and event["priced"] and event["cost_pico"] > 0
    assert event["price_version"].endswith(":claude-haiku-4-5")  # litellm's bundled price map


def test_loading_the_litellm_provider_is_quiet_and_offline():
    script = textwrap.dedent(
        """
        import socket
        attempts = []
        def refuse(*args, **kwargs):
            attempts.append(args[:2])
            raise OSError("no network here")
        socket.socket.connect = refuse
        socket.getaddrinfo = refuse
        from meterline.costing.config import ProviderConfig
        from meterline.proxy.litellm_provider import LiteLLMProviders
        LiteLLMProviders({"claude": ProviderConfig(kind="litellm")})
        print("network attempts:", len(attempts))
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert (out.returncode, out.stdout, out.stderr) == (0, "network attempts: 0\n", "")


def test_anthropic_that_never_accepts_the_connection_is_502(make_proxy, unaccepting_url):
    proxy = make_proxy(
        # litellm bounds the connect phase by read_timeout, not connect_timeout (README)
        providers={"claude": {"kind": "litellm", "base_url": unaccepting_url, "api_key_env": "SIM_API_KEY", "read_timeout": 0.5}},
        models=[{"name": "claude-haiku", "provider": "claude", "upstream_model": "anthropic/claude-3-5-haiku-20241022"}],
    )
    with pytest.raises(openai.APIStatusError) as e:
        client(proxy, proxy.key()).chat.completions.create(model="claude-haiku", messages=[{"role": "user", "content": "x"}])
    assert (e.value.status_code, e.value.code) == (502, "upstream_unavailable")


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_a_claude_agent_turn_through_litellm_joins_the_run_of_the_call_that_asked(claude_proxy, stream):
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}}]
    c = openai.OpenAI(base_url=claude_proxy.url + "/v1", api_key=claude_proxy.key("nlp"), max_retries=0)
    messages: list = [{"role": "user", "content": "find the report"}]
    if stream:
        with c.chat.completions.with_streaming_response.create(model="claude-haiku", messages=messages, tools=tools, stream=True) as r:
            first = r.headers["x-meterline-call-id"]
            deltas = [tc for chunk in r.parse() for ch in chunk.choices for tc in (ch.delta.tool_calls or [])]
        call_id, name = next(d.id for d in deltas if d.id), next(d.function.name for d in deltas if d.function and d.function.name)
        args = "".join(d.function.arguments or "" for d in deltas if d.function)
    else:
        raw = c.chat.completions.with_raw_response.create(model="claude-haiku", messages=messages, tools=tools)
        first = raw.headers["x-meterline-call-id"]
        tc = raw.parse().choices[0].message.tool_calls[0]
        call_id, name, args = tc.id, tc.function.name, tc.function.arguments
    assert json.loads(args) == {"q": "find the report"}
    messages += [
        {"role": "assistant", "content": None, "tool_calls": [{"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}]},
        {"role": "tool", "tool_call_id": call_id, "content": "it is in the drawer"},
    ]
    raw2 = c.chat.completions.with_raw_response.create(model="claude-haiku", messages=messages, tools=tools)
    assert raw2.parse().choices[0].message.content
    second = raw2.headers["x-meterline-call-id"]

    events = {e["call_id"]: e for e in claude_proxy.events()}
    assert (events[second]["parent_call_id"], events[second]["link"]) == (first, "continuation")
    assert events[second]["trace_id"] == events[first]["trace_id"]
