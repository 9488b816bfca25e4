"""`/mcp/{server}`: a transparent MCP Streamable HTTP proxy, metered per JSON-RPC request.

Both protocol eras pass through unchanged: the handshake era (initialize, Mcp-Session-Id,
GET streams, DELETE) and 2026-07-28 (no session, Mcp-* headers, multi-round tool calls).
Responses are relayed as they arrive, JSON or SSE; the only bytes the proxy changes are the
trace context: `params._meta.traceparent` of a `tools/call` (or of any request that carried
one) names our span, and so does `_meta.traceparent` of a server-to-client request on a
call's SSE stream when the server sent none. Attribution comes from the virtual key on
every request (2026-07-28 has no session to inherit it from); the server gets its own
configured credential, never the client's key.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

import httpx
from fastapi import APIRouter, Request
from starlette.responses import Response

from meterline.costing.attribution import new_span_id, new_trace_id, parse_traceparent, traceparent
from meterline.costing.errors import CostingError
from meterline.costing.keys import KeyInfo
from meterline.costing.money import ZERO

from .auth import authenticate
from .body import read_json_body
from .caps import OFF_LOOP_BYTES
from .errors import ProxyError, invalid_request
from .mcp_metering import (
    BadRequest,
    Exchange,
    dumps,
    is_request,
    messages,
    meta_traceparent,
    meta_tracestate,
    parse_request,
    price,
    request_state,
    set_meta_traceparent,
    tool_name,
)
from .mcp_upstream import MCPTarget, response_headers
from .meter import Call
from .responses import CALL_ID, raw_headers
from .run_clues import asked_by_tool_call
from .runtime import Runtime
from .sse import SSEEvents
from .streaming import RelayResponse
from .tracestate import merge

router = APIRouter()

WWW_AUTHENTICATE = 'Bearer realm="meterline"'
SMALL_BODY = 64 * 1024


# One route per method: a shared one gives the three the same OpenAPI operationId.
@router.delete("/mcp/{server}")
@router.get("/mcp/{server}")
@router.post("/mcp/{server}")
async def mcp_endpoint(server: str, request: Request) -> Response:
    rt: Runtime = request.app.state.runtime
    key = await authenticate(rt, request, challenge=WWW_AUTHENTICATE)
    for w in rt.mcp_resumed.expire():  # their owner since their stream ended without an answer
        rt.meter.record(w.call, status="upstream_error", http_status=504, response_bytes=w.response_bytes,
                        cost=ZERO, error="no response on a resumed stream")  # fmt: skip
    target = rt.mcp.targets.get(server)
    if target is None:
        raise ProxyError(404, "mcp_server_not_found", f"MCP server {server!r} is not configured (see `mcp_servers:`)")
    session = request.headers.get("mcp-session-id")
    if session and not rt.mcp_sessions.allowed(target.name, session, key.id):
        # Another key's session: answered as the server answers for one it does not know.
        raise ProxyError(404, "session_not_found", "no such MCP session for this key: send `initialize` to open one")
    if request.method == "POST":
        rt.check_spool()  # nowhere durable to record its calls: refused before anything is spent
        response = await _post(rt, request, key, target)
    else:
        response = await _pass_through(rt, request, target)
    opened = response.headers.get("mcp-session-id")
    if opened:
        rt.mcp_sessions.bind(target.name, opened, key.id)
    if request.method == "DELETE" and session and response.status_code < 300:
        rt.mcp_sessions.end(target.name, session)
    return response


async def _post(rt: Runtime, request: Request, key: KeyInfo, target: MCPTarget) -> Response:
    body = await read_json_body(request, rt.max_body_bytes)
    try:
        # stdlib json (exact big integers) is slow: a large body is parsed on a thread.
        doc = parse_request(body) if len(body) < OFF_LOOP_BYTES else await rt.estimator.run(parse_request, body)
    except BadRequest as e:
        raise invalid_request(str(e)) from None
    msgs = messages(doc)
    exchange = _exchange(rt, request, target)
    first: Call | None = None
    rewritten = False
    try:
        for m in msgs:
            if not is_request(m):
                continue  # notifications and answers to server requests: forwarded, not metered
            size = len(body) if len(msgs) == 1 else len(dumps(m))
            call = await _start(rt, request, key, target, m, size, exchange)
            first = first or call
            if m["method"] == "tools/call" or meta_traceparent(m) is not None:
                rewritten = set_meta_traceparent(m, call.traceparent, rt.meter.tracestate(call)) or rewritten
    except CostingError as e:  # a budget's refusal: the calls of this POST are recorded rejected
        exchange.close("rejected", str(e), http_status=429)
        raise
    if rewritten:
        try:
            body = dumps(doc)
        except RecursionError:  # parsed, but one level too deep to write back
            exchange.close("rejected", "the JSON body is nested too deep", http_status=400)
            raise invalid_request("the JSON body is nested too deep") from None
    span = first.traceparent if first else _span(request)
    ours = rt.meter.tracestate(first) if first else ""
    state = merge(ours, request.headers.get("tracestate")) if ours else request.headers.get("tracestate", "")
    try:
        resp = await rt.mcp.open(
            target, "POST", request.headers, query=request.url.query, body=body, traceparent=span, tracestate=state
        )
    except ProxyError as e:
        exchange.close("upstream_error", str(e), http_status=e.status)
        raise
    except BaseException as e:  # admitted calls are recorded whatever stops the request
        exchange.close("client_closed" if isinstance(e, asyncio.CancelledError) else "upstream_error", type(e).__name__)
        raise
    exchange.http_status = resp.status_code
    headers = response_headers(resp) | {CALL_ID: first.call_id if first else span.split("-")[2]}
    if not exchange.open:
        relay = _relay_bytes(resp)
    elif _is_sse(resp):
        relay = _relay(resp, exchange, _sse_frames(resp, exchange))
    else:
        relay = _relay(resp, exchange, _json_frames(resp, exchange, rt.max_body_bytes))
    return RelayResponse(relay, resp.status_code, raw_headers(headers))


async def _start(
    rt: Runtime, request: Request, key: KeyInfo, target: MCPTarget, m: dict[str, Any], size: int, exchange: Exchange
) -> Call:
    """The metered call of one JSON-RPC request: a new one, or the multi-round call it continues."""
    state = request_state(m)
    parked = rt.mcp_rounds.resume(state, key.id, size) if state else None
    if parked is not None:
        exchange.add(m, parked.call, parked.response_bytes)
        return parked.call
    method, tool = m["method"], tool_name(m)
    call = rt.meter.start(
        key,
        request.headers,
        kind="mcp",
        method=method,
        provider=target.name,
        tool=tool,
        request_bytes=size,
        reserved=price(target.config, method, tool),
        traceparent=meta_traceparent(m),
        tracestate=meta_tracestate(m),
        asked=asked_by_tool_call(tool, m.get("params")) if tool else None,
    )
    if rt.capped(call):  # before the exchange owns it: a call cancelled here was never admitted
        call = await rt.prepare(call)
    exchange.add(m, call)
    rt.admit(call)
    return call


def _span(request: Request) -> str:
    """Trace context for an exchange that is not a metered call (notification, GET, DELETE)."""
    ctx = parse_traceparent(request.headers.get("traceparent"))
    return traceparent(ctx.trace_id if ctx else new_trace_id(), new_span_id())


async def _pass_through(rt: Runtime, request: Request, target: MCPTarget) -> Response:
    """GET (a server-initiated or resumed SSE stream) and DELETE (end of session): forwarded,
    not metered themselves."""
    span = _span(request)
    resp = await rt.mcp.open(
        target,
        request.method,
        request.headers,
        query=request.url.query,
        traceparent=span,
        tracestate=request.headers.get("tracestate", ""),
        stream=request.method == "GET",
    )
    headers = response_headers(resp) | {CALL_ID: span.split("-")[2]}
    exchange = _exchange(rt, request, target)
    if exchange.session and rt.mcp_resumed.has(exchange.session) and _is_sse(resp):
        # A resumed stream may carry the responses of calls whose POST stream ended early.
        return RelayResponse(_relay(resp, exchange, _sse_frames(resp, exchange)), resp.status_code, raw_headers(headers))
    return RelayResponse(_relay_bytes(resp), resp.status_code, raw_headers(headers))


def _exchange(rt: Runtime, request: Request, target: MCPTarget) -> Exchange:
    return Exchange(target.config, rt.meter, rt.mcp_rounds, rt.mcp_resumed, session=request.headers.get("mcp-session-id", ""))


def _is_sse(resp: httpx.Response) -> bool:
    content_type: str = resp.headers.get("content-type", "")
    return content_type.lower().startswith("text/event-stream")


async def _relay_bytes(resp: httpx.Response) -> AsyncGenerator[bytes, None]:
    try:
        async for chunk in resp.aiter_raw():
            yield chunk
    except httpx.HTTPError:
        pass  # the upstream broke off; the client sees the stream end
    finally:
        await resp.aclose()


async def _relay(resp: httpx.Response, exchange: Exchange, frames: AsyncGenerator[bytes, None]) -> AsyncGenerator[bytes, None]:
    """Relay `frames` (SSE events or JSON chunks); calls still open when it ends are recorded as
    broken (upstream) or abandoned (client)."""
    try:
        async for frame in frames:
            yield frame
    except httpx.TimeoutException:
        exchange.close("upstream_error", "read timed out", http_status=504)
    except httpx.HTTPError as e:
        exchange.close("upstream_error", f"response broke off: {type(e).__name__}", http_status=502)
    finally:
        exchange.close("client_closed", "client went away")
        await frames.aclose()
        await resp.aclose()


async def _sse_frames(resp: httpx.Response, exchange: Exchange) -> AsyncGenerator[bytes, None]:
    """Events pass through as they come; a call is recorded before the event ending it leaves."""
    sse = SSEEvents()
    async for chunk in resp.aiter_raw():
        for event in sse.feed(chunk):
            yield exchange.on_sse_event(event)
    rest = sse.rest()
    exchange.ended()
    if rest:
        yield rest


async def _json_frames(resp: httpx.Response, exchange: Exchange, limit: int) -> AsyncGenerator[bytes, None]:
    """Chunks pass through as they come, but for the last, held until the body is metered.

    A body of up to `SMALL_BODY` bytes answering a tools/call is held whole: an
    `input_required` result may carry sampling requests that need our trace context, and a
    body that small is of no use to the client before its end anyway.
    """
    held: list[bytes] = []
    size = 0
    hold_all = any(c.method == "tools/call" for c in exchange.calls.values())
    body: bytearray | None = bytearray()
    async for chunk in resp.aiter_raw():
        size += len(chunk)
        if hold_all and size > SMALL_BODY:
            hold_all = False
        if not hold_all:
            for h in held:
                yield h
            held.clear()
        held.append(chunk)
        exchange.response_bytes += len(chunk)
        if body is not None:
            body += chunk
            if len(body) > limit:
                body = None
    rewritten = exchange.on_body(bytes(body) if body is not None else None)
    exchange.close("upstream_error", f"HTTP {resp.status_code} without a JSON-RPC response")
    if rewritten is not None and hold_all:
        held = [rewritten]
    for h in held:
        yield h
