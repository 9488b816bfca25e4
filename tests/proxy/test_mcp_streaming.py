"""The MCP relay against a hand-written Streamable HTTP server: SSE framed with LF or CRLF and
cut at awkward places, JSON bodies in pieces, multi-round calls by hand, budgets."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import httpx
import pytest
from aiohttp import web

from tests.conftest import MCP_AUTH, serving
from tests.proxy.test_mcp import cost, mcp_config, tool_rows

PROGRESS = {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": 1, "progress": 1}}


def result(id: Any, **fields: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id, "result": {"content": [{"type": "text", "text": "done"}], **fields}}


@asynccontextmanager
async def scripted_server(eol: bytes = b"\n") -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """A server whose answer depends on the tool name; yields (url, state). `slow` sends a
    progress event, then waits for `state["gate"]` before the result, cut into pieces."""
    state: dict[str, Any] = {"gate": asyncio.Event(), "sent": [], "requests": []}

    async def handle(request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        state["requests"].append(raw)
        state.setdefault("headers", []).append(request.headers.copy())
        msg = json.loads(raw)
        name = msg["params"]["name"]
        if name == "slow":
            resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
            await resp.prepare(request)
            first = b"event: message" + eol + b"data: " + json.dumps(PROGRESS).encode() + eol + eol
            last = b"id: 2" + eol + b"event: message" + eol + b"data: " + json.dumps(result(msg["id"])).encode() + eol + eol
            state["sent"] = [first, last]
            await resp.write(first)
            await state["gate"].wait()
            for piece in (last[:7], last[7:-3], last[-3:-1], last[-1:]):  # splits the closing blank line
                await resp.write(piece)
            await resp.write_eof()
            return resp
        if name == "hang":
            await state["gate"].wait()
            return web.json_response(result(msg["id"]))
        if name == "pieces":
            body = json.dumps(result(msg["id"], isError=True)).encode()
            resp = web.StreamResponse(headers={"content-type": "application/json"})
            await resp.prepare(request)
            for i in range(0, len(body), 10):
                await resp.write(body[i : i + 10])
            await resp.write_eof()
            state["sent"] = [body]
            return resp
        if name == "rounds":
            if "requestState" not in msg["params"]:
                answer = web.json_response(result(msg["id"], resultType="input_required", requestState="state-1",
                                                  inputRequests={"k": {"method": "elicitation/create", "params": {}}}))  # fmt: skip
            else:
                assert msg["params"]["requestState"] == "state-1"
                answer = web.json_response(result(msg["id"], resultType="complete"))
            state["sent"].append(answer.body)
            return answer
        return web.json_response({"jsonrpc": "2.0", "id": msg["id"], "error": {"code": -32601, "message": "no"}})

    app = web.Application()
    app.router.add_post("/mcp", handle)
    async with serving(app) as url:
        yield f"{url}/mcp", state


async def post(url: str, **kw: Any) -> httpx.Response:
    """Async, so the scripted server in this test's loop can answer."""
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.post(url, **kw)


def call(id: int, name: str, **params: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": name, "arguments": {}, **params}}


@pytest.mark.parametrize("eol", [b"\n", b"\r\n"], ids=["lf", "crlf"])
async def test_sse_events_pass_through_as_they_come_and_unchanged(make_proxy, eol):
    async with scripted_server(eol) as (url, state):
        proxy = make_proxy(mcp_servers=mcp_config(url))
        key = proxy.key("nlp")
        got = b""
        async with httpx.AsyncClient(timeout=30) as http:
            async with http.stream("POST", f"{proxy.url}/mcp/sim", json=call(1, "slow"),
                                   headers={"Authorization": f"Bearer {key}"}) as r:  # fmt: skip
                async for chunk in r.aiter_raw():
                    got += chunk
                    if got == state["sent"][0]:
                        # The first event arrived while the server still holds the result back.
                        state["gate"].set()
        assert got == b"".join(state["sent"])
        (row,) = tool_rows(proxy.events())
        assert (row["tool"], row["status"], row["response_bytes"]) == ("slow", "ok", len(got))
        assert row["call_id"] == r.headers["x-meterline-call-id"]


async def test_a_json_body_in_pieces_arrives_whole_and_its_tool_error_is_metered(make_proxy):
    async with scripted_server() as (url, state):
        proxy = make_proxy(mcp_servers=mcp_config(url))
        r = await post(f"{proxy.url}/mcp/sim", json=call(1, "pieces"), headers={"Authorization": f"Bearer {proxy.key()}"})
        assert r.content == state["sent"][0]
        (row,) = tool_rows(proxy.events())
        assert (row["status"], row["response_bytes"]) == ("tool_error", len(r.content))


async def test_rounds_joined_by_request_state_are_one_row_with_both_requests_bytes(make_proxy):
    async with scripted_server() as (url, state):
        proxy = make_proxy(mcp_servers=mcp_config(url))
        headers = {"Authorization": f"Bearer {proxy.key()}", "content-type": "application/json"}
        sent = [json.dumps(call(1, "rounds")).encode(), json.dumps(call(2, "rounds", requestState="state-1")).encode()]
        first = await post(f"{proxy.url}/mcp/sim", content=sent[0], headers=headers)
        assert first.json()["result"]["resultType"] == "input_required"
        assert tool_rows(proxy.events()) == []  # a round that asks for input is not a call yet
        second = await post(f"{proxy.url}/mcp/sim", content=sent[1], headers=headers)
        assert second.json()["result"]["resultType"] == "complete"
        (row,) = tool_rows(proxy.events())
        assert (row["status"], cost(row)) == ("ok", Decimal("0.001"))
        assert row["request_bytes"] == len(sent[0]) + len(sent[1])  # as the client sent them
        assert row["response_bytes"] == sum(len(b) for b in state["sent"])  # as the server sent them
        # The client is asked for input with our span, for the LLM calls it may make to answer.
        asked = first.json()["result"]["inputRequests"]["k"]["params"]["_meta"]["traceparent"]
        assert asked == f"00-{row['trace_id']}-{row['call_id']}-01"
        assert row["call_id"] == first.headers["x-meterline-call-id"] == second.headers["x-meterline-call-id"]


async def test_notifications_and_client_answers_are_forwarded_but_not_metered(make_proxy):
    async with scripted_server() as (url, state):
        proxy = make_proxy(mcp_servers=mcp_config(url))
        headers = {"Authorization": f"Bearer {proxy.key()}"}
        await post(f"{proxy.url}/mcp/sim", json={"jsonrpc": "2.0", "id": 9, "result": {}}, headers=headers)
        assert proxy.events() == []


async def test_an_mcp_call_over_budget_is_refused_with_429_and_recorded_as_rejected(make_proxy):
    async with scripted_server() as (url, state):
        proxy = make_proxy(
            mcp_servers=mcp_config(url),
            departments=[{"id": "research", "teams": [{"id": "nlp", "budget_usd_monthly": "0.001"}]}],
        )
        headers = {"Authorization": f"Bearer {proxy.key('nlp')}"}
        assert (await post(f"{proxy.url}/mcp/sim", json=call(1, "pieces"), headers=headers)).status_code == 200
        proxy.events()
        refused = await post(f"{proxy.url}/mcp/sim", json=call(2, "pieces"), headers=headers)
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "budget_exceeded"
        assert len(state["requests"]) == 1
        rows = tool_rows(proxy.events())
        assert [r["status"] for r in rows] == ["tool_error", "rejected"] and cost(rows[1]) == 0


async def test_a_client_that_leaves_mid_call_is_recorded_as_client_closed(make_proxy):
    async with scripted_server() as (url, state):
        proxy = make_proxy(mcp_servers=mcp_config(url))
        async with httpx.AsyncClient(timeout=30) as http:
            async with http.stream("POST", f"{proxy.url}/mcp/sim", json=call(1, "slow"),
                                   headers={"Authorization": f"Bearer {proxy.key()}"}) as r:  # fmt: skip
                async for _ in r.aiter_raw():
                    break  # the first event is here; leave before the result
        rows: list[dict[str, Any]] = []
        for _ in range(200):
            rows = tool_rows(proxy.events())
            if rows:
                break
            await asyncio.sleep(0.05)
        state["gate"].set()
        (row,) = rows
        assert (row["tool"], row["status"], cost(row)) == ("slow", "client_closed", Decimal("0.001"))


async def test_a_server_slower_than_read_timeout_is_504_and_recorded(make_proxy):
    async with scripted_server() as (url, state):
        proxy = make_proxy(mcp_servers=mcp_config(url, read_timeout=0.3))
        r = await post(f"{proxy.url}/mcp/sim", json=call(1, "hang"), headers={"Authorization": f"Bearer {proxy.key()}"})
        state["gate"].set()
        assert r.status_code == 504 and r.json()["error"]["code"] == "upstream_timeout"
        (row,) = tool_rows(proxy.events())
        assert (row["status"], row["http_status"], cost(row)) == ("upstream_error", 504, 0)


async def test_mcp_headers_pass_as_sent_and_ours_stay_here(make_proxy):
    async with scripted_server() as (url, state):
        proxy = make_proxy(mcp_servers=mcp_config(url))
        key = proxy.key()
        sent = {"Mcp-Method": "tools/call", "Mcp-Name": "pieces", "Mcp-Param-Region": "eu-west-1",
                "MCP-Protocol-Version": "2026-07-28", "Mcp-Session-Id": "s-1", "Last-Event-ID": "4",
                "X-Meterline-Project": "p", "Cookie": "c=1", "Authorization": f"Bearer {key}"}  # fmt: skip
        r = await post(f"{proxy.url}/mcp/sim?x=1", json=call(1, "pieces"), headers=sent)
        assert r.status_code == 200
        (got,) = state["headers"]
        for name in ("Mcp-Method", "Mcp-Name", "Mcp-Param-Region", "MCP-Protocol-Version", "Mcp-Session-Id", "Last-Event-ID"):
            assert got[name] == sent[name]
        assert "X-Meterline-Project" not in got and "Cookie" not in got
        assert got["Authorization"] == MCP_AUTH and key not in str(got)
        (row,) = tool_rows(proxy.events())
        ours = f"00-{row['trace_id']}-{row['call_id']}-01"
        assert got["traceparent"] == ours
        assert json.loads(state["requests"][0])["params"]["_meta"]["traceparent"] == ours
        assert row["project"] == "p"
