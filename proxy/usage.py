"""A call's usage: read out of the upstream's response (only the fields metering needs), or
estimated from the request and the text generated when the upstream reported none."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import orjson

from meterline.costing.estimate import count_input, count_text
from meterline.costing.money import Usage

from .sse import event_data

_USAGE = re.compile(rb'"usage"\s*:\s*\{')


MAX_TOKENS = 2**31 - 1  # the ledger's token columns; no real call comes near it


def _int(d: Any, *path: str) -> int:
    for p in path:
        if not isinstance(d, dict):
            return 0
        d = d.get(p)
    # An upstream reporting absurd usage must not break the call or the ledger's batch.
    return min(d, MAX_TOKENS) if isinstance(d, int) and not isinstance(d, bool) and d > 0 else 0


def parse_usage(u: Any) -> Usage | None:
    """Usage in any of the shapes OpenAI-compatible APIs report it (chat, completions,
    embeddings, Responses), including cache-write counts that Anthropic-backed servers add."""
    if not isinstance(u, dict):
        return None
    if "input_tokens" in u or "output_tokens" in u:  # Responses API
        inp = _int(u, "input_tokens")
        cached = _int(u, "input_tokens_details", "cached_tokens")
        write = _int(u, "input_tokens_details", "cache_write_tokens")
        out = _int(u, "output_tokens")
        reasoning = _int(u, "output_tokens_details", "reasoning_tokens")
    else:
        inp = _int(u, "prompt_tokens")
        cached = _int(u, "prompt_tokens_details", "cached_tokens") or _int(u, "cache_read_input_tokens")
        out = _int(u, "completion_tokens")
        reasoning = _int(u, "completion_tokens_details", "reasoning_tokens")
    write = (
        _int(u, "cache_creation_input_tokens")
        or _int(u, "prompt_tokens_details", "cache_creation_tokens")
        or _int(u, "prompt_tokens_details", "cache_write_tokens")
        or _int(u, "input_tokens_details", "cache_write_tokens")
    )
    return Usage(inp, min(cached, inp), out, min(reasoning, out), min(write, inp))


def estimate(doc: dict[str, Any], model: str, output_text: str) -> Usage:
    """Usage counted with the model's tokenizer: the request's input, `output_text` as output
    (each bounded: costing.estimate counts a sample of a long text)."""
    return Usage(input_tokens=count_input(doc, model), output_tokens=count_text(output_text, model))


def estimate_stream(doc: dict[str, Any], model: str, kept: list[bytes], kept_bytes: int, seen_bytes: int) -> Usage:
    """Usage of a stream that reported none, from the events `kept` (the first `kept_bytes` of
    `seen_bytes` bytes of text-bearing events): the output is scaled to the bytes not kept."""
    usage = estimate(doc, model, streamed_text(kept))
    if seen_bytes <= kept_bytes or not kept_bytes:
        return usage
    return Usage(input_tokens=usage.input_tokens, output_tokens=usage.output_tokens * seen_bytes // kept_bytes)


T = TypeVar("T")


class Estimator:
    """Runs token estimates on a small thread pool of its own: tokenizing holds a core for up
    to tens of ms, which on the event loop would stall every call in flight (and /healthz).
    Work past `workers` waits its turn; each piece is bounded by the sample caps.
    """

    def __init__(self, workers: int = 2):
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="meterline-estimate")

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def usage_in_body(body: bytes) -> tuple[Usage | None, str]:
    """Usage and response model from a non-streamed JSON body."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, ""
    if not isinstance(doc, dict):
        return None, ""
    model = doc.get("model")
    return parse_usage(doc.get("usage")), model if isinstance(model, str) else ""


def is_done(event: bytes) -> bool:
    return event_data(event).strip() == b"[DONE]"


def has_usage(event: bytes) -> bool:
    return _USAGE.search(event) is not None


def usage_in_event(event: bytes) -> tuple[Usage | None, str, bool]:
    """(usage, response model, usage-only chunk) of a usage-bearing SSE event."""
    try:
        doc = orjson.loads(event_data(event))
    except orjson.JSONDecodeError:
        return None, "", False
    if not isinstance(doc, dict):
        return None, "", False
    if isinstance(doc.get("response"), dict):  # Responses API: response.completed and kin
        doc = doc["response"]
    model = doc.get("model") if isinstance(doc.get("model"), str) else ""
    usage_only = doc.get("choices") == [] and doc.get("object") in ("chat.completion.chunk", "text_completion")
    return parse_usage(doc.get("usage")), model, usage_only


def streamed_text(events: list[bytes]) -> str:
    """The generated text of a stream so far, to estimate tokens of a stream that ended badly."""
    parts: list[str] = []
    for ev in events:
        data = event_data(ev)
        if not data or data.strip() == b"[DONE]":
            continue
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError:
            continue
        if isinstance(doc, dict):
            parts.append(delta_text(doc))
    return "".join(parts)


def delta_text(doc: dict[str, Any]) -> str:
    """The generated text in one streamed chunk or event: content, legacy text, tool-call
    names and arguments, Responses API deltas."""
    parts: list[str] = []
    if isinstance(doc.get("delta"), str):  # Responses API text deltas
        parts.append(doc["delta"])
    for choice in doc.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        delta = choice.get("delta") or {}
        if isinstance(choice.get("text"), str):  # legacy completions
            parts.append(choice["text"])
        if isinstance(delta, dict):
            if isinstance(delta.get("content"), str):
                parts.append(delta["content"])
            for tc in delta.get("tool_calls") or ():
                fn = tc.get("function") if isinstance(tc, dict) else None
                if isinstance(fn, dict):
                    parts.extend(v for v in (fn.get("name"), fn.get("arguments")) if isinstance(v, str))
    return "".join(parts)
