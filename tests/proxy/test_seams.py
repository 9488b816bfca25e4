"""`create_app`'s seams: the upstream client and the MCP transport are handed in, and the
calls that go through them are metered all the same (no socket to any upstream)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import httpx
import sqlalchemy as sa

from meterline.costing import create_engine, create_key, create_schema, settings_from_dict
from meterline.proxy.app import create_app
from meterline.testing.stand_in import COMPLETION, StandInUpstream
from tests.conftest import base_config, proxy_environ

UPSTREAM = "http://upstream.invalid"


@asynccontextmanager
async def serving(tmp_path, **seams: Any) -> AsyncIterator[tuple[httpx.AsyncClient, Any, str]]:
    """The app with `seams`, its lifespan running, a client over ASGI and a virtual key."""
    cfg = base_config(
        tmp_path,
        UPSTREAM,
        mcp_servers={"tools": {"url": "http://mcp.invalid/mcp", "price_per_call_usd": "0.002"}},
    )
    settings = settings_from_dict(cfg, environ=proxy_environ())
    engine = create_engine(settings.database)
    create_schema(engine)
    _, key = create_key(engine, team="nlp")
    engine.dispose()
    app = create_app(settings, **seams)
    async with app.router.lifespan_context(app):
        rt = app.state.runtime
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy") as client:
            yield client, rt, key


def events(rt: Any) -> list[dict[str, Any]]:
    rt.writer.flush()
    with rt.engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.text("SELECT * FROM events")).mappings()]


async def test_an_injected_upstream_client_carries_llm_calls_and_they_are_metered(tmp_path):
    upstream = StandInUpstream()
    async with serving(tmp_path, upstream_client=upstream) as (client, rt, key):
        r = await client.post(
            "/v1/chat/completions",
            headers={"Authorization": f"Bearer {key}"},
            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]},
        )
        assert r.status_code == 200 and r.json() == COMPLETION  # as the upstream sent it
        ((url, sent, headers),) = upstream.sent
        assert url == UPSTREAM + "/v1/chat/completions" and sent["model"] == "gpt-4o-mini"
        assert headers["authorization"] == "Bearer " + proxy_environ()["SIM_API_KEY"]  # never the client's key
        assert upstream.responses[0].released  # handed back to the pool
        (event,) = events(rt)
    cost = Decimal(1000) * Decimal("0.15") / 10**6 + Decimal(500) * Decimal("0.60") / 10**6
    assert (event["call_id"], event["status"], event["team"]) == (r.headers["x-meterline-call-id"], "ok", "nlp")
    assert (event["input_tokens"], event["output_tokens"], event["usage_source"]) == (1000, 500, "reported")
    assert Decimal(r.headers["x-meterline-cost-usd"]) == cost == Decimal(event["cost_pico"]) / 10**12


async def test_an_injected_mcp_transport_carries_tool_calls_and_they_are_metered(tmp_path):
    seen: list[httpx.Request] = []

    def server(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        msg = json.loads(request.content)
        result = {"content": [{"type": "text", "text": "42"}], "isError": False}
        body = json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": result}).encode()
        # A stream, as a server's body is: the proxy relays it with `aiter_raw`.
        return httpx.Response(200, headers={"content-type": "application/json"}, stream=httpx.ByteStream(body))

    async with serving(tmp_path, mcp_transport=httpx.MockTransport(server)) as (client, rt, key):
        call = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "answer", "arguments": {}}}
        r = await client.post(
            "/mcp/tools",
            headers={"Authorization": f"Bearer {key}", "Accept": "application/json, text/event-stream"},
            json=call,
        )
        assert r.status_code == 200 and r.json()["result"]["content"][0]["text"] == "42"
        (request,) = seen
        assert str(request.url) == "http://mcp.invalid/mcp" and "authorization" not in request.headers
        assert json.loads(request.content)["params"]["_meta"]["traceparent"].split("-")[2] == r.headers["x-meterline-call-id"]
        (event,) = events(rt)
    assert (event["call_id"], event["kind"], event["status"]) == (r.headers["x-meterline-call-id"], "mcp", "ok")
    assert (event["provider"], event["tool"], event["team"]) == ("tools", "answer", "nlp")
    assert Decimal(event["cost_pico"]) / 10**12 == Decimal("0.002")
