"""The OpenAI-compatible routes: forward bytes, read usage, record the call."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator
from typing import Any

import aiohttp
import anyio
import orjson
from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from meterline.costing.errors import CostingError
from meterline.costing.estimate import LOCAL, Tokens
from meterline.costing.money import Usage
from meterline.costing.run_links import NO_PRODUCE

from .auth import authenticate
from .body import header_map, read_json_body
from .caps import DEFAULT as DEFAULT_CAPS
from .caps import OFF_LOOP_BYTES, Caps
from .errors import ProxyError, invalid_request, to_proxy_error
from .meter import Call, Meter
from .openapi import body
from .responses import CALL_ID, RelayedResponse, error_event, meter_headers, raw_headers
from .run_clues import StreamedToolCalls, asked_by_request, produced_by_body, produced_by_response
from .runtime import Runtime
from .sse import SSEEvents, event_data
from .streaming import RelayResponse
from .upstream import raw_response_headers
from .usage import (
    Estimator,
    estimate,
    estimate_stream,
    has_usage,
    is_done,
    usage_in_body,
    usage_in_event,
)

router = APIRouter()

# Routes whose streams take `stream_options.include_usage` (the Responses API always reports).
_ASK_FOR_USAGE = {"/chat/completions", "/completions"}


@router.post("/v1/chat/completions", openapi_extra=body("chat"))
async def chat_completions(request: Request) -> Response:
    return await forward(request, "/chat/completions", "llm")


@router.post("/v1/completions", openapi_extra=body("completions"))
async def completions(request: Request) -> Response:
    return await forward(request, "/completions", "llm")


@router.post("/v1/responses", openapi_extra=body("responses"))
async def responses(request: Request) -> Response:
    return await forward(request, "/responses", "llm")


@router.post("/v1/embeddings", openapi_extra=body("embeddings"))
async def embeddings(request: Request) -> Response:
    return await forward(request, "/embeddings", "embedding")


@router.get("/v1/models")
async def list_models(request: Request) -> Response:
    rt: Runtime = request.app.state.runtime
    key = await authenticate(rt, request)
    data = [
        {"id": m, "object": "model", "created": 0, "owned_by": rt.router.route(m).provider}  # type: ignore[union-attr]
        for m in rt.router.listed()
        if key.may_use(m)
    ]
    return JSONResponse({"object": "list", "data": data})


async def forward(request: Request, path: str, kind: str) -> Response:
    """Serve one call. Its owner from admission on: a refusal is recorded here, every other
    end in `_send` (for a stream, by the relay `_send` hands the call to)."""
    rt: Runtime = request.app.state.runtime
    headers = header_map(request)
    key = await authenticate(rt, request, headers=headers)
    rt.check_spool()  # nowhere durable to record the call: refused before anything is spent
    body = await read_json_body(request, rt.max_body_bytes, headers)
    # A large body is parsed (and written back) on a thread: 8 MB of JSON is tens of ms of
    # CPU that would stall every call in flight. The usual body is parsed right here.
    doc = _parse(body) if len(body) < OFF_LOOP_BYTES else await rt.estimator.run(_parse, body)
    model = doc.get("model")
    if not isinstance(model, str) or not model:
        raise invalid_request("`model` must be a non-empty string", "model")
    route = rt.router.route(model)
    if route is None or not key.may_use(route.model):
        why = "through this proxy" if route is None else "to this key"
        raise ProxyError(404, "model_not_found", f"model {model!r} is not available {why}", param="model")
    stream = doc.get("stream") is True
    if "stream" in doc and not isinstance(doc["stream"], bool):
        raise invalid_request("`stream` must be a boolean", "stream")

    call = rt.meter.start(
        key,
        headers,
        kind=kind,
        method=path,
        provider=route.provider,
        model=route.model,
        upstream_model=route.upstream_model,
        request_bytes=len(body),
        max_output_tokens=_max_output_tokens(doc),
        body_user=doc.get("user"),
        asked=asked_by_request(path, doc, body),
    )
    if rt.capped(call):
        call = await rt.prepare(call)
    try:
        limit_headers = rt.admit(call)
    except CostingError as e:  # a refusal: rate limit, budget, ...
        rt.meter.record(call, status="rejected", http_status=429, error=str(e))
        err = to_proxy_error(e)
        err.headers[CALL_ID] = call.call_id
        raise err from None

    strip_usage = False
    if route.upstream_model != model:
        doc["model"] = route.upstream_model
    if stream and path in _ASK_FOR_USAGE:
        opts = doc.get("stream_options")
        if not (isinstance(opts, dict) and opts.get("include_usage") is True):
            doc["stream_options"] = {**(opts if isinstance(opts, dict) else {}), "include_usage": True}
            strip_usage = True
    if route.upstream_model != model or strip_usage:
        body = orjson.dumps(doc) if len(body) < OFF_LOOP_BYTES else await rt.estimator.run(orjson.dumps, doc)
    try:
        if rt.litellm is not None and route.provider in rt.litellm.providers:
            answer = await rt.litellm.forward(
                rt.meter, call, path, doc, route.upstream_model, stream, strip_usage=strip_usage, estimator=rt.estimator
            )
            if limit_headers:
                answer.headers.update(limit_headers)
            return answer
        return await _send(rt, headers, call, path, body, doc, stream, strip_usage, limit_headers)
    except ProxyError as e:
        e.headers[CALL_ID] = call.call_id  # an error answer is a proxied response too
        if limit_headers:
            e.headers.update(limit_headers)
        raise


async def _send(
    rt: Runtime,
    headers: dict[str, str],
    call: Call,
    path: str,
    body: bytes,
    doc: dict[str, Any],
    stream: bool,
    strip_usage: bool,
    limit_headers: dict[str, str] | None = None,
) -> Response:
    """Forward the call to its OpenAI-compatible provider and record how it ended: each path
    out of here records it once, but a stream's, whose relay does. `limit_headers`: the
    `x-ratelimit-*` of the call's rate limits, added to its response."""
    try:
        resp = await rt.upstreams.send(call.provider, path, body, headers, call.traceparent)
    except ProxyError as e:
        rt.meter.record(call, status="upstream_error", http_status=e.status, error=str(e))
        raise
    caps: Caps = rt.caps
    ok = 200 <= resp.status < 300  # else an error, or a redirect (not followed): no work was done
    if ok and stream:
        relay = _relay(rt.meter, resp, call, doc, path, strip_usage, caps, rt.estimator)
        return RelayResponse(relay, resp.status, _headers(resp, {CALL_ID: call.call_id}, limit_headers))
    try:
        data = await _read(resp, call.provider, caps.response_bytes)
    except _ReadFailed as e:
        rt.meter.record(call, status="upstream_error", http_status=e.error.status, response_bytes=e.size, error=e.note)
        raise e.error from None
    if not ok:
        error = data[:200].decode("utf-8", "replace")
        rt.meter.record(call, status="upstream_error", http_status=resp.status, response_bytes=len(data), error=error)
        return RelayedResponse(data, resp.status, _headers(resp, {CALL_ID: call.call_id}, limit_headers))
    small = len(data) < OFF_LOOP_BYTES  # a large body is read for usage on a thread
    usage, response_model, answer = usage_in_body(data) if small else await rt.estimator.run(usage_in_body, data)
    source = "reported"
    if usage is None:
        usage, source = await rt.estimator.run(_estimate_body, doc, call.model, data, rt.estimator.tokens), "estimated"
    # Only a body that names a tool call (or a Responses API answer, whose id a next turn may
    # name) is read for what it produced: plain chat pays one byte search.
    produced = produced_by_body(path, answer) if path == "/responses" or b'"tool_calls"' in data else NO_PRODUCE
    cost = rt.meter.record(
        call, status="ok", usage=usage, usage_source=source, response_model=response_model, response_bytes=len(data),
        produced=produced,
    )  # fmt: skip
    return RelayedResponse(data, resp.status, _headers(resp, meter_headers(call.call_id, cost), limit_headers))


def _max_output_tokens(doc: dict[str, Any]) -> int:
    """The request's cap on output: Chat's `max_completion_tokens` (or the older `max_tokens`),
    the Responses API's `max_output_tokens`; 0 when none is a positive integer."""
    for name in ("max_completion_tokens", "max_tokens", "max_output_tokens"):
        v = doc.get(name)
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            return v
    return 0


# Keys metering reads. orjson keeps the last of duplicate keys; an upstream may keep the first,
# so a body naming one of these twice is refused: it would be priced as one model, run as another.
METERED_KEYS = frozenset(("model", "stream", "stream_options", "include_usage", "user", "max_tokens",
                          "max_completion_tokens", "max_output_tokens"))  # fmt: skip
# Only a body that might name one twice is parsed again, slowly: one with a second `"model"`,
# `"stream"`, `"stream_options"` or `"include_usage"`, or an escaped ASCII letter that could
# spell one (`"mod\\u0065l"`). A few scans of the body's bytes, no parsing, on the usual call.
_STREAM_KEYS = (b'"stream"', b'"stream_options"', b'"include_usage"')
_ESCAPED_LETTERS = (b"\\u004", b"\\u005", b"\\u006", b"\\u007")


def _parse(body: bytes) -> dict[str, Any]:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise invalid_request("request body is not valid JSON") from None
    if not isinstance(doc, dict):
        raise invalid_request("request body must be a JSON object")
    if (
        body.count(b'"model"') > 1
        or (b'"stream' in body and any(body.count(k) > 1 for k in _STREAM_KEYS))
        or (b"\\u00" in body and any(e in body for e in _ESCAPED_LETTERS))
    ):
        twice = _duplicate_key(body)
        if twice is not None:
            raise invalid_request(f"request body names {twice!r} twice: send each field once", twice)
    return doc


def _duplicate_key(body: bytes) -> str | None:
    """A key metering reads that an object of the body names twice (the slow path)."""
    found: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: set[str] = set()
        for k, _ in items:
            if k in seen and k in METERED_KEYS:
                found.append(k)
            seen.add(k)
        return dict(items)

    try:
        json.loads(body, object_pairs_hook=pairs)
    except (ValueError, RecursionError):
        return None  # orjson read it: what the stdlib refuses is no duplicate of ours
    return found[0] if found else None


class _ReadFailed(Exception):
    """An upstream body that could not be read whole: the error the client gets, and what the
    call's ledger row says."""

    def __init__(self, error: ProxyError, note: str, size: int = 0):
        super().__init__(note)
        self.error, self.note, self.size = error, note, size


async def _read(resp: aiohttp.ClientResponse, provider: str, limit: int) -> bytes:
    """The whole body, refused (502 `upstream_too_large`) past `limit` bytes."""
    try:
        if resp.content_length is not None and resp.content_length <= limit:
            return await resp.read()  # the usual case: its length is known and fits
        chunks, size = [], 0
        async for chunk in resp.content.iter_any():
            size += len(chunk)
            if size > limit:
                resp.close()
                err = ProxyError(502, "upstream_too_large", f"provider {provider!r} sent a response over the proxy's {limit}-byte limit")
                raise _ReadFailed(err, "response too large", size)
            chunks.append(chunk)
        return b"".join(chunks)
    except (TimeoutError, aiohttp.ServerTimeoutError):
        raise _ReadFailed(ProxyError(504, "upstream_timeout", f"provider {provider!r} timed out"), "read timed out") from None
    except aiohttp.ClientError as e:
        err = ProxyError(502, "upstream_unavailable", f"provider {provider!r} broke off ({type(e).__name__})")
        raise _ReadFailed(err, type(e).__name__) from None
    finally:
        resp.release()


def _headers(
    resp: aiohttp.ClientResponse, extra: dict[str, str], limits: dict[str, str] | None = None
) -> list[tuple[bytes, bytes]]:
    """The upstream's headers with ours, raw; the upstream's own `x-ratelimit-*` give way to
    the proxy's limits when one applies (the client is held to ours)."""
    headers = raw_response_headers(resp)
    if limits:
        headers = [h for h in headers if not h[0].startswith(b"x-ratelimit-")]
        extra = extra | limits
    headers += raw_headers(extra)
    return headers


def _estimate_body(doc: dict[str, Any], model: str, data: bytes, tokens: Tokens) -> Usage:
    return estimate(doc, model, _text_of(data), tokens)


def _text_of(data: bytes) -> str:
    """Generated text of a non-streamed body that came without usage."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        return ""
    if not isinstance(doc, dict):
        return ""
    parts: list[str] = []
    for choice in doc.get("choices") or ():
        if isinstance(choice, dict):
            msg = choice.get("message")
            content = msg.get("content") if isinstance(msg, dict) else None
            text = choice.get("text")
            parts.append(content if isinstance(content, str) else "")
            parts.append(text if isinstance(text, str) else "")
    for item in doc.get("output") or ():
        for c in (item.get("content") or ()) if isinstance(item, dict) else ():
            if isinstance(c, dict) and isinstance(c.get("text"), str):
                parts.append(c["text"])
    return "".join(parts)


async def _relay(
    meter: Meter,
    resp: aiohttp.ClientResponse,
    call: Call,
    doc: dict[str, Any],
    path: str,
    strip_usage: bool,
    caps: Caps = DEFAULT_CAPS,
    estimator: Estimator | None = None,
) -> AsyncGenerator[bytes, None]:
    """Pass SSE events through as they come; the call's owner from its response's start.

    Until the event that ends the call (its usage, else `[DONE]`, else the end of the stream)
    every upstream read is cut into events and read. The call is recorded once, on the way out
    of that part, whichever way it leaves: with that event (before it leaves), cut off, or
    abandoned by the client (the generator closed at a `yield`). After that, bytes pass as
    they come.

    A stream the upstream breaks off ends with an error event, as OpenAI ends its own failed
    streams, so that SDKs raise instead of handing over a silently truncated answer; so does
    a stream past `caps` (its bytes or its duration), which is cut off there.

    Until usage arrives the first `caps.estimate_sample_bytes` of the events are kept, should
    the stream end without it: its output is estimated from them and scaled to the rest.
    """
    chunks = resp.content.iter_any()
    sse = SSEEvents(caps.sse_event_bytes)
    kept: list[bytes] = []
    kept_bytes = seen_bytes = size = 0
    deadline = time.monotonic() + caps.stream_seconds
    status, usage, response_model, error = "client_closed", None, "", ""
    tool_calls: StreamedToolCalls | None = None  # a chat stream's, once one names a tool call
    produced = NO_PRODUCE
    tail = b""  # what leaves once the call is recorded: the event that ended it and what came with it
    cut = False  # the stream ends with an error event: broken off, or past a cap
    try:
        try:
            async for chunk in chunks:
                size += len(chunk)
                if size > caps.response_bytes or time.monotonic() > deadline:
                    err = _past_cap(call.provider, caps, size)
                    status, error, tail, cut = "upstream_error", str(err), error_event(err, path), True
                    break
                # The events of one upstream read leave in one write: a write per event cost a
                # send(2) each and halved stream throughput (bench/RESULTS.md). The substring
                # tests keep the parsing off the events that carry no usage and no [DONE].
                out = []
                ended = False
                for event in sse.feed(chunk):
                    if ended:
                        out.append(event)
                        continue
                    if b'"tool_calls"' in event:
                        tool_calls = tool_calls or StreamedToolCalls()
                        _feed(tool_calls, event)
                    if b'"usage"' in event and has_usage(event):
                        usage, response_model, usage_only, obj = usage_in_event(event)
                        if obj is not None and path == "/responses":
                            produced = produced_by_response(obj)
                        if usage is not None:
                            status, ended = "ok", True
                            if usage_only and strip_usage:
                                continue
                    elif b"[DONE]" in event and is_done(event):
                        status, ended = "ok", True
                    seen_bytes += len(event)
                    if kept_bytes < caps.estimate_sample_bytes:
                        kept.append(event)
                        kept_bytes += len(event)
                    out.append(event)
                if ended:
                    tail = b"".join(out) + sse.rest()
                    break
                if out:
                    yield out[0] if len(out) == 1 else b"".join(out)
            else:
                status, tail = "ok", sse.rest()
        except (TimeoutError, aiohttp.ClientError) as e:
            err = _broken_off(call.provider, e)
            # A partial event left in `sse` is dropped: it cannot be parsed.
            status, error, tail, cut = "upstream_error", str(err), error_event(err, path), True
        finally:
            if tool_calls is not None:
                produced = tool_calls.produced()
            if usage is None:
                args = (doc, call.model, kept, kept_bytes, seen_bytes, estimator.tokens if estimator else LOCAL)
                # Shielded: when the client left, this task is being cancelled, and the
                # estimate's wait for its thread would be cancelled too, leaving the call unrecorded.
                with anyio.CancelScope(shield=True):
                    estimated = await estimator.run(estimate_stream, *args) if estimator else estimate_stream(*args)
                meter.record(call, status=status, usage=estimated, usage_source="estimated", response_bytes=size,
                             error=error, produced=produced)  # fmt: skip
            else:
                meter.record(call, status=status, usage=usage, response_model=response_model, response_bytes=size,
                             produced=produced)  # fmt: skip
        if tail:
            yield tail
        if not cut:
            try:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > caps.response_bytes or time.monotonic() > deadline:
                        yield error_event(_past_cap(call.provider, caps, size), path)
                        return
                    yield chunk
            except (TimeoutError, aiohttp.ClientError) as e:
                yield error_event(_broken_off(call.provider, e), path)
    finally:
        if resp.content.at_eof():
            resp.release()  # back to the pool
        else:
            resp.close()  # stop reading from an upstream nobody listens to


def _feed(tool_calls: StreamedToolCalls, event: bytes) -> None:
    try:
        chunk = orjson.loads(event_data(event))
    except orjson.JSONDecodeError:
        return
    if type(chunk) is dict:
        tool_calls.feed(chunk)


def _past_cap(provider: str, caps: Caps, size: int) -> ProxyError:
    """The error a stream past one of `caps` is cut off with."""
    timeout = size <= caps.response_bytes
    return ProxyError(
        504 if timeout else 502,
        "upstream_timeout" if timeout else "upstream_too_large",
        f"provider {provider!r} stream passed the proxy's cap of "
        + (f"{caps.stream_seconds:g} seconds" if timeout else f"{caps.response_bytes} bytes"),
    )


def _broken_off(provider: str, e: BaseException) -> ProxyError:
    """The error a stream the upstream broke off ends with."""
    timeout = isinstance(e, asyncio.TimeoutError | aiohttp.ServerTimeoutError)
    return ProxyError(
        504 if timeout else 502,
        "upstream_timeout" if timeout else "upstream_unavailable",
        f"provider {provider!r} {'timed out' if timeout else 'broke off'} mid-stream ({type(e).__name__})",
    )
