"""Chat completions through the proxy with the real openai SDK, against the simulator."""

from __future__ import annotations

import importlib.metadata
from decimal import Decimal

import openai
import pytest

from meterline.proxy.upstream import FORWARD_REQUEST_HEADERS
from tests.conftest import PROVIDER_KEY


def client(proxy, key, **kw):
    return openai.OpenAI(base_url=proxy.url + "/v1", api_key=key, max_retries=0, **kw)


def test_non_stream_is_forwarded_and_metered_exactly(proxy, upstream):
    key = proxy.key("nlp")
    raw = client(proxy, key).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hello there sim:cached=3,reasoning=2"}]
    )
    completion = raw.parse()
    (event,) = proxy.events()
    usage = completion.usage
    assert event["input_tokens"] == usage.prompt_tokens > 0
    assert event["cached_input_tokens"] == 3
    assert event["output_tokens"] == usage.completion_tokens > 0
    assert event["reasoning_tokens"] == 2
    expected = (
        (usage.prompt_tokens - 3) * Decimal("0.15") + 3 * Decimal("0.075") + usage.completion_tokens * Decimal("0.60")
    ) / 1_000_000
    assert Decimal(event["cost_pico"]) / 10**12 == expected
    assert Decimal(raw.headers["x-meterline-cost-usd"]) == expected
    assert raw.headers["x-meterline-call-id"] == event["call_id"]
    assert (event["kind"], event["status"], event["usage_source"]) == ("llm", "ok", "reported")
    assert (event["department"], event["team"], event["model"], event["provider"]) == ("research", "nlp", "gpt-4o-mini", "sim")


def test_upstream_gets_provider_key_and_traceparent_never_the_virtual_key(proxy, upstream):
    key = proxy.key("nlp")
    upstream.requests.clear()
    client(proxy, key).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    (req,) = [r for r in upstream.requests if r["path"] == "/v1/chat/completions"]
    assert req["headers"]["authorization"] == f"Bearer {PROVIDER_KEY}"
    assert key not in str(req["headers"])
    # The proxy's own agent, and none of the SDK's telemetry headers (x-stainless-*).
    assert req["headers"]["user-agent"] == f"meterline/{importlib.metadata.version('meterline')}"
    assert set(req["headers"]) - set(FORWARD_REQUEST_HEADERS) <= {
        "host", "authorization", "traceparent", "accept-encoding", "user-agent", "content-length"
    }  # fmt: skip
    (event,) = proxy.events()
    assert req["headers"]["traceparent"] == f"00-{event['trace_id']}-{event['call_id']}-01"


@pytest.mark.parametrize("include_usage", [False, True])
def test_stream_is_metered_and_usage_chunk_only_reaches_clients_who_asked(proxy, include_usage):
    key = proxy.key("web")
    kwargs = {"stream_options": {"include_usage": True}} if include_usage else {}
    chunks = list(
        client(proxy, key).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "count sim:chunks=12"}], stream=True, **kwargs
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    usage_chunks = [c for c in chunks if c.usage is not None]
    (event,) = proxy.events()
    assert text
    assert event["usage_source"] == "reported" and event["status"] == "ok"
    assert (event["department"], event["team"]) == ("product", "web")
    if include_usage:
        assert len(usage_chunks) == 1
        assert usage_chunks[0].usage.completion_tokens == event["output_tokens"]
    else:
        assert usage_chunks == []
        assert event["output_tokens"] > 0


def test_attribution_headers_body_user_and_traceparent(proxy):
    key = proxy.key("vision", project="default-proj")
    trace = "0af7651916cd43dd8448eb211c80319c"
    c = client(
        proxy,
        key,
        default_headers={
            "X-Meterline-Project": "atlas",
            "X-Meterline-Tags": "env=prod,feature=search",
            "traceparent": f"00-{trace}-b7ad6b7169203331-01",
        },
    )
    c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}], user="alice@example.com")
    client(proxy, key).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "y"}])
    first, second = proxy.events()
    assert (first["project"], first["user"], first["tags"], first["trace_id"]) == (
        "atlas", "alice@example.com", "env=prod,feature=search", trace,
    )  # fmt: skip
    assert first["parent_call_id"] == ""  # the client's own span is not a metered call
    assert second["project"] == "default-proj"


def test_model_alias_and_glob_route_to_the_configured_upstream_model(proxy, upstream):
    key = proxy.key()
    upstream.requests.clear()
    client(proxy, key).chat.completions.create(model="house", messages=[{"role": "user", "content": "x"}])
    client(proxy, key).chat.completions.create(model="gpt-4.1-nano", messages=[{"role": "user", "content": "x"}])
    sent = [r["json"]["model"] for r in upstream.requests if r["path"] == "/v1/chat/completions"]
    assert sent == ["sim-large", "gpt-4.1-nano"]
    assert [e["model"] for e in proxy.events()] == ["house-model", "gpt-4.1-nano"]


def test_models_lists_what_the_key_may_use(proxy):
    everything = {m.id for m in client(proxy, proxy.key()).models.list()}
    assert {"gpt-4o-mini", "house-model", "house"} <= everything
    limited = {m.id for m in client(proxy, proxy.key(models=["gpt-4o*"])).models.list()}
    assert limited == {"gpt-4o-mini"}
    with pytest.raises(openai.NotFoundError) as e:
        client(proxy, proxy.key(models=["gpt-4o*"])).chat.completions.create(model="house", messages=[])
    assert e.value.code == "model_not_found"
