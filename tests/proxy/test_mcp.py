"""MCP through the proxy, end to end: the real `mcp` SDK client, the proxy, the simulated MCP
server, and (for sub-calls) the simulated LLM upstream behind the proxy's /v1."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Annotated, Any

import httpx
import httpx2
import openai
import pytest
from mcp import Client, ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.server.mcpserver import MCPServer, Resolve, Sample
from mcp.server.transport_security import TransportSecuritySettings
from mcp_types import CreateMessageResult, ElicitResult, SamplingMessage, TextContent

from meterline.testing.mcp_server import MCPSimServer
from tests.conftest import MCP_AUTH, free_port

KINDS = ["modern", "legacy", "session"]  # Client() 2026-07-28, Client(mode="legacy"), ClientSession
PRICE = Decimal("0.001")
SUMMARIZE_PRICE = Decimal("0.002")


def mcp_config(url: str, **extra: Any) -> dict[str, Any]:
    return {
        "sim": {
            "url": url,
            "auth_header_env": "SIM_MCP_AUTH",
            "price_per_call_usd": str(PRICE),
            "tool_prices": {"summarize": str(SUMMARIZE_PRICE)},
            "read_timeout": 30,
            **extra,
        }
    }


class Recorder:
    """ASGI wrapper keeping the headers of every request the MCP server gets."""

    def __init__(self, app: Any):
        self.app, self.headers = app, []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.headers.append({k.decode(): v.decode() for k, v in scope["headers"]})
        await self.app(scope, receive, send)


@pytest.fixture
def setup(make_proxy: Any) -> Iterator[Any]:
    """(proxy, sim, agent key of team nlp); the sim's LLM key is team web's, through the proxy."""
    started: list[MCPSimServer] = []

    def make(subcalls: str = "root_caller", **sim_kwargs: Any) -> tuple[Any, MCPSimServer, str]:
        port = free_port()
        proxy = make_proxy(
            mcp_servers=mcp_config(f"http://127.0.0.1:{port}/mcp"), chargeback={"subcalls": subcalls}
        )
        sim = MCPSimServer(
            port=port,
            llm_base_url=proxy.url + "/v1",
            llm_api_key=proxy.key("web", name="tool-server"),
            expected_auth=MCP_AUTH.removeprefix("Bearer "),
            **sim_kwargs,
        )
        sim.app = Recorder(sim.app)
        started.append(sim.start())
        return proxy, sim, proxy.key("nlp", name="agent")

    yield make
    for sim in started:
        sim.stop()


@asynccontextmanager
async def connect(kind: str, url: str, key: str | None, **callbacks: Any) -> AsyncIterator[Any]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
        transport = streamable_http_client(url, http_client=http)
        if kind == "session":
            async with transport as (read, write), ClientSession(read, write, **callbacks) as session:
                await session.initialize()
                yield session
        else:
            async with Client(transport, mode="auto" if kind == "modern" else "legacy", **callbacks) as client:
                yield client


async def approve(ctx: Any, params: Any) -> ElicitResult:
    return ElicitResult(action="accept", content={"approve": True})


def cost(event: dict[str, Any]) -> Decimal:
    return Decimal(event["cost_pico"]) / 10**12


def tool_rows(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["kind"] == "mcp" and e["method"] == "tools/call"]


async def call_tools(client: Any) -> list[Any]:
    return [
        await client.list_tools(),
        await client.call_tool("echo", {"text": "hello"}),
        await client.call_tool("add", {"a": 2, "b": 3}),
        await client.call_tool("fail", {}),
    ]


def dump(results: list[Any]) -> list[Any]:
    return [r.model_dump(exclude={"meta"}) for r in results]


@pytest.mark.parametrize("kind", KINDS)
async def test_tools_arrive_unchanged_and_each_call_is_one_attributed_row(setup, kind):
    proxy, sim, key = setup()
    async with connect(kind, f"{proxy.url}/mcp/sim", key) as client:
        via_proxy = await call_tools(client)
    async with connect(kind, sim.url, MCP_AUTH.removeprefix("Bearer ")) as client:
        direct = await call_tools(client)
    assert dump(via_proxy) == dump(direct)

    events = proxy.events()
    calls = tool_rows(events)
    assert [(e["tool"], e["status"]) for e in calls] == [("echo", "ok"), ("add", "ok"), ("fail", "tool_error")]
    for e in calls:
        assert (e["provider"], e["team"], e["department"], e["key_team"]) == ("sim", "nlp", "research", "nlp")
        assert cost(e) == PRICE and e["priced"] and e["http_status"] == 200
        assert e["request_bytes"] > 0 and e["response_bytes"] > 0 and e["trace_id"]
    others = [e for e in events if e["method"] != "tools/call"]
    assert all(e["kind"] == "mcp" and e["tool"] == "" and cost(e) == 0 for e in others)
    methods = {e["method"] for e in others}
    assert "tools/list" in methods
    assert ("server/discover" if kind == "modern" else "initialize") in methods
    assert not [e for e in events if e["method"].startswith("notifications/")]


@pytest.mark.parametrize("kind", KINDS)
async def test_confirm_is_one_call_however_many_rounds(setup, kind):
    proxy, _, key = setup()
    async with connect(kind, f"{proxy.url}/mcp/sim", key, elicitation_callback=approve) as client:
        result = await client.call_tool("confirm", {"action": "deploy"})
    assert result.content[0].text == "deploy: approved"
    (row,) = tool_rows(proxy.events())
    assert (row["tool"], row["status"], cost(row)) == ("confirm", "ok", PRICE)


async def test_rounds_of_a_multi_round_call_add_up_bytes(setup):
    proxy, sim, key = setup()
    async with connect("modern", f"{proxy.url}/mcp/sim", key, elicitation_callback=approve) as client:
        await client.call_tool("confirm", {"action": "deploy"})
    (row,) = tool_rows(proxy.events())
    bodies = [h for h in sim.app.headers if h.get("mcp-name") == "confirm"]
    assert len(bodies) == 2  # two rounds reached the server
    assert row["request_bytes"] > 2 * len('{"name":"confirm"}')


@pytest.mark.parametrize("kind", KINDS)
async def test_llm_subcalls_of_a_tool_call_are_linked_and_charged_to_the_root_caller(setup, kind):
    proxy, _, key = setup()
    async with connect(kind, f"{proxy.url}/mcp/sim", key) as client:
        result = await client.call_tool("summarize", {"text": "a long text", "calls": 3})
    assert not result.is_error
    events = proxy.events()
    (tool,) = tool_rows(events)
    llm = [e for e in events if e["kind"] == "llm"]
    assert len(llm) == 3
    assert cost(tool) == SUMMARIZE_PRICE
    for e in llm:
        assert e["parent_call_id"] == tool["call_id"] and e["trace_id"] == tool["trace_id"]
        assert (e["team"], e["department"], e["key_team"]) == ("nlp", "research", "web")
        assert cost(e) > 0
    tree = cost(tool) + sum(cost(e) for e in llm)
    charged_to_nlp = sum(cost(e) for e in events if e["team"] == "nlp" and e["trace_id"] == tool["trace_id"])
    assert charged_to_nlp == tree


async def test_key_owner_setting_charges_subcalls_to_the_key_that_made_them(setup):
    proxy, _, key = setup(subcalls="key_owner")
    async with connect("modern", f"{proxy.url}/mcp/sim", key) as client:
        await client.call_tool("summarize", {"text": "a long text", "calls": 2})
    events = proxy.events()
    (tool,) = tool_rows(events)
    llm = [e for e in events if e["kind"] == "llm"]
    assert tool["team"] == "nlp" and len(llm) == 2
    for e in llm:
        assert e["parent_call_id"] == tool["call_id"]
        assert (e["team"], e["department"], e["key_team"]) == ("web", "product", "web")


async def test_the_mcp_server_gets_its_own_credential_never_the_virtual_key(setup):
    proxy, sim, key = setup()
    async with connect("session", f"{proxy.url}/mcp/sim", key) as client:
        await client.call_tool("echo", {"text": "x"})
    assert sim.app.headers
    for headers in sim.app.headers:
        assert headers["authorization"] == MCP_AUTH
        assert key not in str(headers)


async def test_tool_call_carries_our_span_upstream_as_header_and_meta(setup):
    proxy, sim, key = setup()
    async with connect("modern", f"{proxy.url}/mcp/sim", key) as client:
        await client.call_tool("echo", {"text": "x"}, meta={"traceparent": "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"})
    (row,) = tool_rows(proxy.events())
    assert row["trace_id"] == "ab" * 16 and row["parent_span_id"] == "cd" * 8
    (sent,) = [h for h in sim.app.headers if h.get("mcp-name") == "echo"]
    assert sent["traceparent"] == f"00-{row['trace_id']}-{row['call_id']}-01"


async def test_unknown_server_is_404(setup):
    proxy, _, key = setup()
    r = httpx.post(f"{proxy.url}/mcp/nope", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                   headers={"Authorization": f"Bearer {key}"})  # fmt: skip
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "mcp_server_not_found"


async def test_bad_key_is_401_with_a_challenge_and_never_forwarded(setup):
    proxy, sim, _ = setup()
    r = httpx.post(f"{proxy.url}/mcp/sim", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                   headers={"Authorization": "Bearer sk-not-a-key"})  # fmt: skip
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "invalid_api_key"
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert sim.app.headers == []
    with pytest.raises(Exception):  # noqa: B017 - the SDK wraps the 401 in an ExceptionGroup
        async with connect("session", f"{proxy.url}/mcp/sim", None) as client:
            await client.list_tools()


async def test_server_down_is_502_and_recorded(make_proxy):
    proxy = make_proxy(mcp_servers=mcp_config(f"http://127.0.0.1:{free_port()}/mcp"))
    key = proxy.key("nlp")
    r = httpx.post(f"{proxy.url}/mcp/sim", json={"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                   "params": {"name": "echo", "arguments": {"text": "x"}}},
                   headers={"Authorization": f"Bearer {key}"})  # fmt: skip
    assert r.status_code == 502
    assert r.json()["error"]["code"] == "upstream_unavailable"
    (row,) = proxy.events()
    assert (row["kind"], row["tool"], row["status"], row["http_status"], cost(row)) == (
        "mcp", "echo", "upstream_error", 502, 0
    )


MODERN = "2026-07-28"
ENVELOPE = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}


def modern_post(proxy: Any, key: str, name: str, arguments: dict[str, Any], header_name: str | None = None) -> httpx.Response:
    """A 2026-07-28 tools/call by hand, as the SDK's Client sends it."""
    body = {"jsonrpc": "2.0", "id": 7, "method": "tools/call",
            "params": {"name": name, "arguments": arguments, "_meta": ENVELOPE}}  # fmt: skip
    headers = {"Authorization": f"Bearer {key}", "accept": "application/json, text/event-stream",
               "mcp-protocol-version": MODERN, "mcp-method": "tools/call", "mcp-name": header_name or name}  # fmt: skip
    return httpx.post(f"{proxy.url}/mcp/sim", json=body, headers=headers)


async def test_a_json_rpc_error_passes_through_and_is_a_protocol_error_row_that_costs_nothing(setup):
    proxy, _, key = setup()
    r = modern_post(proxy, key, "echo", {"text": "x"}, header_name="add")  # Mcp-Name disagrees with the body
    assert r.status_code == 400 and "error" in r.json()
    (row,) = tool_rows(proxy.events())
    assert (row["tool"], row["status"], row["http_status"], cost(row)) == ("echo", "protocol_error", 400, 0)
    assert row["call_id"] == r.headers["x-meterline-call-id"]
    assert row["error"].startswith(str(r.json()["error"]["code"]))


async def test_an_unknown_tool_is_whatever_the_server_says_here_a_tool_error(setup):
    proxy, _, key = setup()
    r = modern_post(proxy, key, "nope", {})
    assert r.json()["result"]["isError"] is True
    (row,) = tool_rows(proxy.events())
    assert (row["tool"], row["status"]) == ("nope", "tool_error")


def sample_question(question: str) -> Sample:
    return Sample([SamplingMessage(role="user", content=TextContent(type="text", text=question))], max_tokens=20)


def ask(question: str, answer: Annotated[CreateMessageResult, Resolve(sample_question)]) -> str:
    """Answer with the client's LLM."""
    return answer.content.text


def sampling_server_app() -> Any:
    """An MCP server whose `ask` tool samples the client's LLM: a sampling/createMessage
    request mid-call in the handshake era, an `input_required` round in 2026-07-28."""
    server = MCPServer("sampler", log_level="WARNING")
    server.tool()(ask)
    return server.streamable_http_app(
        streamable_http_path="/mcp",
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )


@pytest.mark.parametrize("kind", KINDS)
async def test_an_llm_call_the_client_makes_for_sampling_is_a_child_of_the_tool_call(make_proxy, kind):
    port = free_port()
    proxy = make_proxy(mcp_servers=mcp_config(f"http://127.0.0.1:{port}/mcp"))
    key = proxy.key("nlp")
    sampled: list[Any] = []

    async def sample(ctx: Any, params: Any) -> CreateMessageResult:
        # The client answers through Meterline, carrying the trace context it was given.
        sampled.append(params.meta)
        llm = openai.AsyncOpenAI(base_url=proxy.url + "/v1", api_key=key, max_retries=0)
        answer = await llm.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": params.messages[0].content.text}],
            # Both, as W3C propagators send them: the tracestate member is the proof of the parent.
            extra_headers={"traceparent": params.meta["traceparent"], "tracestate": params.meta["tracestate"]},
        )
        await llm.close()
        text = answer.choices[0].message.content
        return CreateMessageResult(role="assistant", content=TextContent(type="text", text=text), model="gpt-4o-mini")

    sim = MCPSimServer(port=port)
    sim.app = sampling_server_app()
    with sim:
        async with connect(kind, f"{proxy.url}/mcp/sim", key, sampling_callback=sample) as client:
            result = await client.call_tool("ask", {"question": "why?"})
    assert not result.is_error and result.content[0].text
    events = proxy.events()
    (tool,) = tool_rows(events)
    (llm_row,) = [e for e in events if e["kind"] == "llm"]
    assert sampled[0]["traceparent"] == f"00-{tool['trace_id']}-{tool['call_id']}-01"
    assert llm_row["parent_call_id"] == tool["call_id"]


@pytest.mark.parametrize(("subcalls", "charged"), [("root_caller", "nlp"), ("key_owner", "web")])
async def test_chargeback_counts_tool_calls_and_the_export_keeps_both_teams(setup, subcalls, charged):
    from meterline.costing import load_chargeback
    from meterline.reports import EXPORTS, tool_costs, top_runs

    proxy, _, key = setup(subcalls=subcalls)
    async with connect("modern", f"{proxy.url}/mcp/sim", key) as client:
        await client.call_tool("summarize", {"text": "t", "calls": 2})
        await client.list_tools()
    events = proxy.events()
    period = events[0]["charge_period"]
    lines = load_chargeback(proxy.engine, proxy.settings, period).lines
    (tool_line,) = [ln for ln in lines if ln.kind == "mcp" and ln.tool == "summarize"]
    assert (tool_line.team, tool_line.provider, tool_line.requests, tool_line.tool_calls) == ("nlp", "sim", 1, 1)
    assert all(ln.tool_calls == 0 for ln in lines if ln.kind == "mcp" and ln.tool == "")
    (llm_line,) = [ln for ln in lines if ln.kind == "llm"]
    assert (llm_line.team, llm_line.requests) == (charged, 2)
    text = "".join(EXPORTS["events"]["csv"](proxy.engine, proxy.settings, period))
    rows = list(csv.DictReader(io.StringIO(text)))
    sub = [r for r in rows if r["kind"] == "llm"]
    assert {(r["team"], r["key_team"]) for r in sub} == {(charged, "web")}
    (tool_row,) = [r for r in rows if r["tool"] == "summarize"]
    assert {r["parent_call_id"] for r in sub} == {tool_row["call_id"]}
    assert sum(Decimal(r["cost_usd"]) for r in rows) == sum(cost(e) for e in events)
    # The tree costs the same whoever pays for it.
    (summarize,) = [t for t in tool_costs(proxy.engine, period) if t.tool == "summarize"]
    llm_cost = sum(cost(e) for e in events if e["kind"] == "llm")
    assert (summarize.calls, summarize.subcalls) == (1, 2)
    assert (summarize.own_usd, summarize.subcall_usd) == (SUMMARIZE_PRICE, llm_cost)
    (run,) = top_runs(proxy.engine, period)
    assert run.cost_usd == SUMMARIZE_PRICE + llm_cost and run.depth == 2 and run.team == "nlp"


async def test_the_servers_own_401_and_challenge_pass_through(make_proxy):
    with MCPSimServer(expected_auth="not-what-the-proxy-sends") as sim:
        proxy = make_proxy(mcp_servers=mcp_config(sim.url))
        r = modern_post(proxy, proxy.key("nlp"), "echo", {"text": "x"})
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    assert r.json() == {"error": "unauthorized"}  # the server's body, not ours
    (row,) = tool_rows(proxy.events())
    assert (row["status"], row["http_status"], cost(row)) == ("upstream_error", 401, 0)


@pytest.mark.parametrize("sim_kwargs", [{"json_response": True}, {"stateless": True}], ids=["json", "stateless"])
async def test_handshake_era_servers_answering_json_or_without_sessions(setup, sim_kwargs):
    proxy, _, key = setup(**sim_kwargs)
    async with connect("session", f"{proxy.url}/mcp/sim", key) as client:
        results = await call_tools(client)
    assert results[1].content[0].text == "hello" and results[3].is_error
    assert [(e["tool"], e["status"]) for e in tool_rows(proxy.events())] == [
        ("echo", "ok"), ("add", "ok"), ("fail", "tool_error"),
    ]  # fmt: skip
