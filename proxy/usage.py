"""A call's usage: read out of the upstream's response (only the fields metering needs), or
estimated from the request and the text generated when the upstream reported none."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import orjson

from meterline.costing.estimate import LOCAL, Tokens, count_input, count_text
from meterline.costing.money import INVALID_USAGE, MAX_TOKENS, Extra, Usage

from .sse import event_data

_USAGE = re.compile(rb'"usage"\s*:\s*\{')


# Responses API output items that are server-side tool uses, billed per use.
_TOOL_ITEMS: dict[object, int] = {"web_search_call": 0, "file_search_call": 1, "code_interpreter_call": 2}


def _count(v: Any) -> int:
    """A count as reported: -1 when out of range (negative, past MAX_TOKENS, a float, a
    string, a boolean), which the caller records as 0 and flags (issue 20)."""
    if type(v) is int:
        return v if 0 <= v <= MAX_TOKENS else -1
    return 0 if v is None else -1


def _sub(d: dict[str, Any], key: str) -> dict[str, Any] | None:
    v = d.get(key)
    return v if type(v) is dict else None


def parse_usage(u: Any, service_tier: Any = None, output: Any = None) -> Usage | None:
    """Usage in any of the shapes OpenAI-compatible APIs report it (chat, completions,
    embeddings, Responses), with what Anthropic- and Gemini-backed servers (litellm) add:
    cache writes and their 1-hour part, server tool uses, the service tier. A count out of
    range is recorded as 0 and the usage flagged `invalid_usage`: neither priced nor free.

    service_tier: the response's own `service_tier`; output: a Responses API `output`, whose
    tool-call items are counted.
    """
    if type(u) is not dict:
        return None
    if "input_tokens" in u or "output_tokens" in u:  # Responses API
        inp, out = _count(u.get("input_tokens")), _count(u.get("output_tokens"))
        pd, cd = _sub(u, "input_tokens_details"), _sub(u, "output_tokens_details")
    else:
        inp, out = _count(u.get("prompt_tokens")), _count(u.get("completion_tokens"))
        pd, cd = _sub(u, "prompt_tokens_details"), _sub(u, "completion_tokens_details")
    bad = inp < 0 or out < 0
    cached = reasoning = write = write_1h = audio_in = image_in = audio_out = image_out = 0
    # The details are read only when present, and their rarer fields only when named: a
    # text-only call does a handful of dict lookups here.
    if pd is not None:
        cached = _count(pd.get("cached_tokens"))
        write = _count(pd.get("cache_write_tokens") or pd.get("cache_creation_tokens"))
        if pd.get("audio_tokens"):
            audio_in = _count(pd["audio_tokens"])
        if pd.get("image_tokens"):
            image_in = _count(pd["image_tokens"])
        if "cache_creation_token_details" in pd:
            write_1h = _count((_sub(pd, "cache_creation_token_details") or {}).get("ephemeral_1h_input_tokens"))
    if cd is not None:
        reasoning = _count(cd.get("reasoning_tokens"))
        if cd.get("audio_tokens"):
            audio_out = _count(cd["audio_tokens"])
        if cd.get("image_tokens"):
            image_out = _count(cd["image_tokens"])
    if not cached and "cache_read_input_tokens" in u:
        cached = _count(u["cache_read_input_tokens"])
    if "cache_creation_input_tokens" in u:
        write = _count(u["cache_creation_input_tokens"]) or write
    searches = files = code = 0
    if "server_tool_use" in u:  # Anthropic's, as litellm passes it on
        searches = _count((_sub(u, "server_tool_use") or {}).get("web_search_requests"))
    if type(output) is list and len(output) > 1:  # a lone message item has no tool use
        for item in output:
            kind = item.get("type") if type(item) is dict else None
            if kind == "web_search_call":
                searches += 1
            elif kind == "file_search_call":
                files += 1
            elif kind == "code_interpreter_call":
                code += 1
    counts = [inp, cached, out, reasoning, write, write_1h, audio_in, audio_out, image_in, image_out, searches]
    if bad or min(counts) < 0:
        counts = [max(c, 0) for c in counts]
        inp, cached, out, reasoning, write, write_1h, audio_in, audio_out, image_in, image_out, searches = counts
        bad = True
    tier = service_tier if service_tier is not None else u.get("service_tier")
    tier = "" if tier is None or tier == "default" else _tier(tier)
    extra = None
    if write_1h or audio_in or audio_out or image_in or image_out or searches or files or code or tier or bad:
        extra = Extra(
            min(write_1h, write, inp),
            min(audio_in, inp),
            min(audio_out, out),
            min(image_in, inp),
            min(image_out, out),
            searches,
            files,
            code,
            tier,
            INVALID_USAGE if bad else "",
        )
    return Usage(inp, min(cached, inp), out, min(reasoning, out), min(write, inp), extra)


def _tier(value: Any) -> str:
    """The tier a response says applied, as a short name; "" for the default or unsaid."""
    if type(value) is not str or value in ("", "default", "standard", "auto"):
        return ""
    return value[:16]


def usage_of(doc: dict[str, Any]) -> Usage | None:
    """The usage of one response object (a chat completion or chunk, a Responses response)."""
    return parse_usage(doc.get("usage"), doc.get("service_tier"), doc.get("output"))


def estimate(doc: dict[str, Any], model: str, output_text: str, tokens: Tokens = LOCAL) -> Usage:
    """Usage counted with the model's tokenizer: the request's input, `output_text` as output
    (each bounded: costing.estimate counts a sample of a long text)."""
    return Usage(input_tokens=count_input(doc, model, tokens), output_tokens=count_text(output_text, model, tokens))


def estimate_stream(
    doc: dict[str, Any], model: str, kept: list[bytes], kept_bytes: int, seen_bytes: int, tokens: Tokens = LOCAL
) -> Usage:
    """Usage of a stream that reported none, from the events `kept` (the first `kept_bytes` of
    `seen_bytes` bytes of text-bearing events): the output is scaled to the bytes not kept."""
    usage = estimate(doc, model, streamed_text(kept), tokens)
    if seen_bytes <= kept_bytes or not kept_bytes:
        return usage
    return Usage(input_tokens=usage.input_tokens, output_tokens=usage.output_tokens * seen_bytes // kept_bytes)


T = TypeVar("T")


class Estimator:
    """Runs token estimates on a small thread pool of its own: tokenizing holds a core for up
    to tens of ms, which on the event loop would stall every call in flight (and /healthz).
    Work past `workers` waits its turn; each piece is bounded by the sample caps.

    `tokens` counts the tokens (estimate.LOCAL, or a tokenizer_process.TokenizerProcess: the
    tokenizer in a child, `server.tokenizer: process`); the Estimator closes it.
    """

    def __init__(self, workers: int = 2, tokens: Tokens = LOCAL):
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="meterline-estimate")
        self.tokens = tokens

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        close = getattr(self.tokens, "close", None)
        if close is not None:
            close()


def usage_in_body(body: bytes) -> tuple[Usage | None, str, dict[str, Any] | None]:
    """Usage, response model and the parsed body (None if not an object) of a non-streamed JSON body."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, "", None
    if not isinstance(doc, dict):
        return None, "", None
    model = doc.get("model")
    return usage_of(doc), model if isinstance(model, str) else "", doc


def is_done(event: bytes) -> bool:
    return event_data(event).strip() == b"[DONE]"


def has_usage(event: bytes) -> bool:
    return _USAGE.search(event) is not None


def usage_in_event(event: bytes) -> tuple[Usage | None, str, bool, dict[str, Any] | None]:
    """(usage, response model, usage-only chunk, the event's object) of a usage-bearing SSE
    event; for the Responses API the object is the response the event carries."""
    try:
        doc = orjson.loads(event_data(event))
    except orjson.JSONDecodeError:
        return None, "", False, None
    if not isinstance(doc, dict):
        return None, "", False, None
    if isinstance(doc.get("response"), dict):  # Responses API: response.completed and kin
        doc = doc["response"]
    model = doc.get("model") if isinstance(doc.get("model"), str) else ""
    usage_only = doc.get("choices") == [] and doc.get("object") in ("chat.completion.chunk", "text_completion")
    return usage_of(doc), model, usage_only, doc


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
