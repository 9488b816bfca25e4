"""Providers that do not speak OpenAI's API (Anthropic, ...), translated by litellm.

The client still speaks OpenAI's format: the request body's OpenAI parameters go to
`litellm.acompletion` (or `aembedding`), and its `ModelResponse` / chunks go back as OpenAI
JSON / SSE. Usage
comes from litellm's OpenAI-shaped usage, which keeps Anthropic's cache-read
(`prompt_tokens_details.cached_tokens`) and cache-write (`cache_creation_input_tokens`) counts.

This module is imported only when a `kind: litellm` provider is configured: litellm is slow
to import and sets module-wide state.
"""

from __future__ import annotations

import importlib
import logging
import os
import warnings
from collections.abc import AsyncGenerator, Mapping
from typing import Any

import aiohttp
import anyio
import httpx
import orjson
from starlette.responses import Response

from meterline.costing.config import ProviderConfig
from meterline.costing.money import Usage
from meterline.costing.run_links import NO_PRODUCE

from .caps import DEFAULT as DEFAULT_CAPS
from .errors import ProxyError
from .meter import Call, Meter
from .responses import CALL_ID, error_event, meter_headers, raw_headers
from .run_clues import StreamedToolCalls, produced_by_body
from .sse import data_event
from .streaming import RelayResponse
from .usage import Estimator, delta_text, estimate, parse_usage

# litellm fetches its price map from the internet at import unless told to use the bundled
# copy; the proxy must start offline and prices from its own price book anyway.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
import litellm  # noqa: E402

litellm.suppress_debug_info = True  # no "Give Feedback / Get Help" banners on stdout
for _name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "litellm"):
    logging.getLogger(_name).setLevel(logging.CRITICAL)  # its errors reach us as exceptions

# Fields of the OpenAI body that are ours to handle, not passed to litellm as parameters.
_OWN_FIELDS = frozenset(("model", "stream", "stream_options"))

KEEP_CHARS = DEFAULT_CAPS.estimate_sample_bytes  # of a stream's text, kept until usage arrives


class LiteLLMProviders:
    """Parameters:
    providers: all configured providers; those of `kind: litellm` are served here.
    """

    def __init__(self, providers: Mapping[str, ProviderConfig]):
        self.configs = {name: p for name, p in providers.items() if p.kind == "litellm"}
        self.providers = frozenset(self.configs)
        _warm_up()

    async def close(self) -> None:
        """Close the HTTP clients litellm keeps for the process, and forget them: they belong
        to this event loop, and a later app (a test's, a worker's) must not reuse them closed."""
        import litellm
        from litellm.llms.custom_httpx.async_client_cleanup import close_litellm_async_clients

        await close_litellm_async_clients()  # type: ignore[no-untyped-call]  # litellm is untyped
        litellm.in_memory_llm_clients_cache.flush_cache()

    async def forward(
        self,
        meter: Meter,
        call: Call,
        path: str,
        doc: dict[str, Any],
        upstream_model: str,
        stream: bool,
        *,
        strip_usage: bool = False,
        estimator: Estimator | None = None,
    ) -> Response:
        """Send one OpenAI-format request through litellm and record the call: here, once on
        each way out, or for a stream by its relay.

        strip_usage: the client did not ask for the usage chunk (we did), so it is not sent on.
        estimator: where a call without usage is estimated (its threads and tokenizer); None: here.
        """
        if path not in ("/chat/completions", "/embeddings"):
            meter.record(call, status="rejected", http_status=400, error=f"{path} is not served through litellm")
            raise ProxyError(
                400,
                "invalid_request",
                f"provider {call.provider!r} (kind: litellm) serves /v1/chat/completions and /v1/embeddings, not /v1{path}",
            )
        provider = self.configs[call.provider]
        params = {k: v for k, v in doc.items() if k not in _OWN_FIELDS}
        if stream:
            params["stream_options"] = {"include_usage": True}
        common = {
            "model": upstream_model,
            "api_base": provider.base_url,
            "api_key": provider.api_key.get_secret_value() if provider.api_key else None,
            "timeout": httpx.Timeout(provider.read_timeout, connect=provider.connect_timeout),
            "extra_headers": {"traceparent": call.traceparent},
        }
        try:
            if path == "/embeddings":
                # Vectors come back as floats: the openai SDK accepts them even when it asked for base64.
                params.pop("encoding_format", None)
                result = await litellm.aembedding(**common, **params)
            else:
                result = await litellm.acompletion(**common, stream=stream, **params)
        except Exception as e:  # noqa: BLE001 - every litellm failure is recorded, known ones mapped
            err = to_proxy_error(e, call.provider)
            meter.record(call, status="upstream_error", http_status=err.status if err else 500, error=str(e))
            if err is None:
                raise
            raise err from None
        if not stream:
            data = result.model_dump_json(exclude_none=True).encode()
            whole = result.model_dump()
            usage = parse_usage(whole.get("usage"))
            if usage is None:
                usage, source = await _estimate(estimator, doc, call.model, _message_text(result)), "estimated"
            else:
                source = "reported"
            cost = meter.record(
                call,
                status="ok",
                usage=usage,
                usage_source=source,
                response_model=result.model or "",
                response_bytes=len(data),
                produced=produced_by_body(path, whole) if b'"tool_calls"' in data else NO_PRODUCE,
            )
            return Response(data, 200, media_type="application/json", headers=meter_headers(call.call_id, cost))
        headers = {CALL_ID: call.call_id, "content-type": "text/event-stream", "cache-control": "no-cache"}
        return RelayResponse(_relay(meter, result, call, doc, strip_usage, estimator), 200, raw_headers(headers))


def _warm_up() -> None:
    """Do litellm's lazy work now, at start-up: pydantic warns (UserWarning) about litellm's own
    types when it builds their schemas, and here that can be silenced without racing requests."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        importlib.import_module("litellm.llms.github_copilot.per_user_auth")  # imported by every async call
        litellm.ModelResponse()
        litellm.ModelResponseStream(choices=[{"delta": {"content": ""}}])
        litellm.EmbeddingResponse()


def to_proxy_error(e: Exception, provider: str) -> ProxyError | None:
    """litellm's exceptions as the contract's errors: no connection (refused, or not accepted
    within connect_timeout) 502, read timeouts 504, and an upstream's own HTTP error keeps its
    status, with its message in OpenAI's error shape. None: not an upstream failure we know."""
    causes = _chain(e)
    if any(isinstance(c, httpx.ConnectTimeout | aiohttp.ConnectionTimeoutError) for c in causes):
        return ProxyError(502, "upstream_unavailable", f"provider {provider!r} did not accept a connection in time")
    if any(isinstance(c, litellm.Timeout | httpx.TimeoutException | TimeoutError) for c in causes):
        return ProxyError(504, "upstream_timeout", f"provider {provider!r} timed out")
    # litellm reports a refused connection as its InternalServerError (500): look at the cause.
    if any(isinstance(c, litellm.APIConnectionError | httpx.TransportError | aiohttp.ClientConnectionError) for c in causes):
        return ProxyError(502, "upstream_unavailable", f"provider {provider!r} is unreachable: {_message(e)}")
    status = getattr(e, "status_code", None)
    if isinstance(status, int) and 400 <= status < 600:
        code = getattr(e, "code", None)
        return ProxyError(status, code if isinstance(code, str) and code else "upstream_error", _message(e))
    return None


def _broken_off(e: Exception, provider: str) -> ProxyError:
    """The error a stream litellm broke off ends with."""
    return to_proxy_error(e, provider) or ProxyError(502, "upstream_unavailable", f"stream broke off: {e}")


def _chain(e: BaseException) -> list[BaseException]:
    """`e` and the exceptions it was raised from."""
    out: list[BaseException] = []
    cur: BaseException | None = e
    while cur is not None and cur not in out:
        out.append(cur)
        cur = cur.__cause__ or cur.__context__
    return out


def _message(e: Exception) -> str:
    msg = getattr(e, "message", None)
    return msg if isinstance(msg, str) and msg else str(e)


def _message_text(result: Any) -> str:
    parts = []
    for choice in getattr(result, "choices", None) or ():
        content = getattr(getattr(choice, "message", None), "content", None)
        if isinstance(content, str):
            parts.append(content)
    return "".join(parts)


def _is_empty(chunk: dict[str, Any]) -> bool:
    """A chunk that carries nothing once its usage is taken out."""
    for choice in chunk.get("choices") or ():
        delta = {k: v for k, v in (choice.get("delta") or {}).items() if v not in (None, "", [], {})}
        if delta or choice.get("finish_reason"):
            return False
    return True


def _sse(doc: Any) -> bytes:
    return data_event(orjson.dumps(doc))


def _outgoing(out: dict[str, Any], strip_usage: bool) -> dict[str, Any] | None:
    """The chunk as it leaves: without its usage when the client did not ask for it (None:
    nothing left then)."""
    if strip_usage and parse_usage(out.get("usage")) is not None:
        del out["usage"]
        if _is_empty(out):
            return None
    return out


async def _estimate(estimator: Estimator | None, doc: dict[str, Any], model: str, text: str) -> Usage:
    if estimator is None:
        return estimate(doc, model, text)
    # Shielded: a client that left cancels the relay, and the call must be recorded all the same.
    with anyio.CancelScope(shield=True):
        usage = await estimator.run(estimate, doc, model, text, estimator.tokens)
    return usage


async def _relay(
    meter: Meter, stream: Any, call: Call, doc: dict[str, Any], strip_usage: bool, estimator: Estimator | None = None
) -> AsyncGenerator[bytes, None]:
    """litellm chunks as OpenAI SSE; the call's owner from its response's start.

    The call is recorded once, on the way out of the part that reads chunks until one carries
    usage: with that chunk (before it leaves), at the stream's end, broken off, or abandoned by
    the client (the generator closed at a `yield`). Later chunks pass as they come, and `[DONE]`
    leaves last."""
    chunks = aiter(stream)
    text: list[str] = []  # the first KEEP_CHARS of the text, for an estimate scaled to the rest
    kept = seen = size = 0
    status, usage, response_model, error = "client_closed", None, "", ""
    held: dict[str, Any] | None = None  # the chunk that carried usage, leaving once the call is recorded
    broken: ProxyError | None = None
    tool_calls = StreamedToolCalls()  # what the stream asks for: the clues of its run (costing/run_links.py)
    try:
        try:
            async for chunk in chunks:
                out = chunk.model_dump(exclude_none=True)
                tool_calls.feed(out)
                piece = delta_text(out)
                seen += len(piece)
                if kept < KEEP_CHARS:
                    text.append(piece)
                    kept += len(piece)
                usage = parse_usage(out.get("usage"))
                if usage is not None:
                    status, response_model = "ok", out.get("model", "")
                    held = _outgoing(out, strip_usage)
                    break
                data = _sse(out)
                size += len(data)
                yield data
            else:
                status = "ok"
        except Exception as e:  # noqa: BLE001 - a stream litellm broke off: record it, tell the client
            broken = _broken_off(e, call.provider)
            status, error = "upstream_error", f"stream broke off: {broken}"
        finally:
            if usage is None:
                usage = await _estimate(estimator, doc, call.model, "".join(text))  # bounded: a sample of a long text
                if seen > kept:
                    usage = Usage(input_tokens=usage.input_tokens, output_tokens=usage.output_tokens * seen // kept)
                meter.record(call, status=status, usage=usage, usage_source="estimated", response_bytes=size, error=error,
                             produced=tool_calls.produced())  # fmt: skip
            else:
                meter.record(call, status=status, usage=usage, response_model=response_model, response_bytes=size,
                             produced=tool_calls.produced())  # fmt: skip
        if broken is not None:
            yield error_event(broken, "/chat/completions")
            return
        if held is not None:
            yield _sse(held)
        try:
            async for chunk in chunks:
                later = _outgoing(chunk.model_dump(exclude_none=True), strip_usage)
                if later is not None:
                    yield _sse(later)
        except Exception as e:  # noqa: BLE001 - broken off after the call was recorded: tell the client
            yield error_event(_broken_off(e, call.provider), "/chat/completions")
            return
        yield b"data: [DONE]\n\n"
    finally:
        await stream.aclose()  # stop reading from an upstream nobody listens to
