"""The simulated MCP server, driven by the real `mcp` SDK clients over real sockets."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import httpx2
import pytest
from aiohttp import web
from mcp import Client, ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp_types import ElicitResult
from opentelemetry import context as otel_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from meterline.testing.mcp_server import MCPSimServer
from tests.conftest import serving

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
# Client() -> 2026-07-28, Client(mode="legacy") -> 2025-11-25, ClientSession + initialize
KINDS = ["modern", "legacy", "session"]


@pytest.fixture(scope="module")
def sim() -> Iterator[MCPSimServer]:
    with MCPSimServer() as server:
        yield server


@asynccontextmanager
async def connect(
    kind: str, url: str, headers: dict[str, str] | None = None, **callbacks: Any
) -> AsyncIterator[Any]:
    """An object with list_tools()/call_tool() talking to `url` in the given era."""
    async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
        transport = streamable_http_client(url, http_client=http)
        if kind == "session":
            async with (
                transport as (read, write),
                ClientSession(read, write, **callbacks) as session,
            ):
                await session.initialize()
                yield session
        else:
            async with Client(
                transport, mode="auto" if kind == "modern" else "legacy", **callbacks
            ) as client:
                yield client


@asynccontextmanager
async def fake_llm() -> AsyncIterator[tuple[str, list[web.Request]]]:
    """A minimal OpenAI-compatible /v1/chat/completions; yields (base_url, received requests)."""
    seen: list[web.Request] = []

    async def chat(request: web.Request) -> web.Response:
        seen.append(request)
        body = await request.json()
        text = f"summary #{len(seen)} by {body['model']}"
        return web.json_response(
            {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]}
        )

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    async with serving(app) as url:
        yield f"{url}/v1", seen


@pytest.mark.parametrize("kind", KINDS)
async def test_tools(sim: MCPSimServer, kind: str) -> None:
    async with connect(kind, sim.url) as client:
        if kind != "session":
            assert client.protocol_version == ("2026-07-28" if kind == "modern" else "2025-11-25")
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert {"echo", "add", "fail", "summarize", "confirm"} <= names

        echoed = await client.call_tool("echo", {"text": "hello"})
        assert echoed.content[0].text == "hello" and not echoed.is_error
        added = await client.call_tool("add", {"a": 2, "b": 3})
        assert added.structured_content == {"result": 5}
        failed = await client.call_tool("fail", {})
        assert failed.is_error and "simulated tool failure" in failed.content[0].text


@pytest.mark.parametrize("kind", KINDS)
async def test_confirm_asks_once(sim: MCPSimServer, kind: str) -> None:
    asked: list[str] = []

    async def elicit(ctx: Any, params: Any) -> ElicitResult:
        asked.append(params.message)
        return ElicitResult(action="accept", content={"approve": True})

    # 2026-07-28: an input_required round trip; handshake era: elicitation/create mid-call.
    async with connect(kind, sim.url, elicitation_callback=elicit) as client:
        result = await client.call_tool("confirm", {"action": "deploy"})
    assert result.content[0].text == "deploy: approved"
    assert asked == ["Perform 'deploy'?"]


async def test_summarize_forwards_meta_traceparent_and_fans_out() -> None:
    async with fake_llm() as (llm_url, seen):
        with MCPSimServer(llm_base_url=llm_url, llm_api_key="sk-mcp", llm_model="gpt-x") as sim:
            async with connect("modern", sim.url) as client:
                # The SDK injects the ambient trace context into params._meta (and, when an
                # OTel SDK is active, a child span of it - so compare trace ids).
                token = otel_context.attach(
                    TraceContextTextMapPropagator().extract({"traceparent": TRACEPARENT})
                )
                try:
                    result = await client.call_tool(
                        "summarize",
                        {"text": "long text", "calls": 2},
                        meta={"traceparent": TRACEPARENT},
                    )
                finally:
                    otel_context.detach(token)
    assert not result.is_error
    assert result.content[0].text == "summary #1 by gpt-x\nsummary #2 by gpt-x"
    assert len(seen) == 2
    for request in seen:
        assert request.headers["Authorization"] == "Bearer sk-mcp"
        assert request.headers["traceparent"].split("-")[1] == TRACEPARENT.split("-")[1]


async def test_summarize_forwards_http_traceparent() -> None:
    async with fake_llm() as (llm_url, seen):
        with MCPSimServer(llm_base_url=llm_url, llm_api_key="sk-mcp") as sim:
            async with connect("session", sim.url, headers={"traceparent": TRACEPARENT}) as client:
                result = await client.call_tool("summarize", {"text": "abc"})
    assert result.content[0].text == "summary #1 by gpt-4o-mini"
    assert [r.headers["traceparent"] for r in seen] == [TRACEPARENT]


async def test_summarize_without_llm_is_tool_error(sim: MCPSimServer) -> None:
    async with connect("modern", sim.url) as client:
        result = await client.call_tool("summarize", {"text": "abc"})
    assert result.is_error


async def test_expected_auth() -> None:
    with MCPSimServer(expected_auth="mcp-key") as sim:
        async with httpx.AsyncClient() as http:
            denied = await http.post(
                sim.url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
            )
        assert denied.status_code == 401
        assert denied.headers["www-authenticate"].startswith("Bearer")

        for kind in KINDS:
            async with connect(
                kind, sim.url, headers={"Authorization": "Bearer mcp-key"}
            ) as client:
                result = await client.call_tool("add", {"a": 1, "b": 1})
                assert result.structured_content == {"result": 2}
