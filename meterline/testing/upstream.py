"""Deterministic local upstream simulator: OpenAI-compatible and Anthropic Messages APIs.

Used by tests, benchmarks and `meterline demo`.  Responses are deterministic text
("alpha beta gamma delta ...") with usage that always matches what is reported.

Test controls travel inside the body (a proxy in front does not forward arbitrary
headers): a directive such as ``sim:chunks=20,delay_ms=5,cached=10`` anywhere in the
last user text changes behaviour.  Keys (all integers):

    chunks       content chunks (2 words each) in stream and non-stream answers (default 8)
    delay_ms     sleep before a non-stream answer / between streamed content chunks
    break_after  stream: abort the TCP connection after N content chunks
    no_usage     never report usage (key omitted; no usage chunk/event)
    cached, reasoning, cache_write   reported cached / reasoning / cache-creation tokens
    output_tokens                    reported completion tokens (overrides the rule below)
    prompt_tokens                    reported prompt tokens (overrides the rule below)
    tier         the service tier the response reports: 1 priority, 2 flex (else "default")
    audio_in, audio_out              audio tokens within prompt / completion (chat)
    web_search   web searches run: Responses `web_search_call` items, Anthropic server_tool_use
    write_hour   Anthropic: the part of cache_write written for an hour (usage.cache_creation)
    junk         usage no real provider reports: 1 huge (10^30), 2 negative, 3 float,
                 4 string, 5 boolean prompt tokens; 6 every count at 10^9
    status       answer this HTTP status with the provider's error body
    hang         accept and never answer (cancelled when the client disconnects)
    tools        with `tools` in the request: call the first N of them at once (default 1)
    turns        with `tools`: answer with tool calls for N rounds, then text (default 1)

Tools (chat, Responses and Anthropic Messages), like an agent's LLM: a request with `tools` whose conversation
has had fewer tool rounds (since the last user message) than `turns` is answered with calls
to the first `tools` tools, with random ids as providers mint them (`call_` + 24
alphanumerics; Responses `fc_`/`resp_` + hex). The arguments come from the request: each
required string property is the last user text (with " #K" from the second round on),
numbers 1, booleans true; so two conversations with different prompts ask differently.

Token rules: prompt = words of every message text + 4 per message (chat, responses,
anthropic; instructions/system count as a message), words of the prompt/inputs for
completions and embeddings; completion = 2 * chunks + reasoning (tool call: 10 + reasoning).
Anthropic input_tokens excludes cache reads/writes, which are reported separately.

    python -m meterline.testing.upstream --port 8900 [--host 127.0.0.1] [--api-key KEY]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import itertools
import json
import os
import random
import re
import string
import struct
import threading
import time
import zlib
from functools import lru_cache
from typing import Any

import orjson
from aiohttp import web

__all__ = ["SimServer", "create_app", "main", "completion_text", "DEFAULT_CHUNKS"]

DEFAULT_CHUNKS = 8
TOOL_CALL_TOKENS = 10  # completion tokens reported for a tool-call answer
PER_MESSAGE_TOKENS = 4  # chat/responses/anthropic: words + 4 per message
MODELS = (
    "gpt-4o-mini",
    "gpt-4o",
    "gpt-4.1-nano",
    "sim-large",
    "text-embedding-3-small",
    "claude-sonnet-4-5",
)
_PAIRS = ("alpha beta", "gamma delta", "epsilon zeta", "eta theta")
_DIRECTIVE = re.compile(r"sim:((?:[a-z_]+=\d+,?)+)")
_TIERS = {1: "priority", 2: "flex"}
_JUNK: dict[int, Any] = {1: 10**30, 2: -5, 3: 12.5, 4: "12", 5: True}

_JSON = {"Content-Type": "application/json"}
_SSE = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
_DONE = b"data: [DONE]\n\n"
_OPENAI_ERRORS = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
}
_ANTHROPIC_ERRORS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


_ALNUM = string.ascii_letters + string.digits
_rng = random.Random()  # seeded from os.urandom: ids differ between runs and processes
_ROUNDS_KEPT = 10_000  # Responses ids remembered for `previous_response_id` (oldest dropped)


def _random_id(prefix: str, n: int = 24) -> str:
    """An id shaped like the providers': `call_` + 24 alphanumerics, say."""
    return prefix + "".join(_rng.choices(_ALNUM, k=n))


def _hex_id(prefix: str, nbytes: int = 24) -> str:
    return prefix + os.urandom(nbytes).hex()


class _State:
    __slots__ = ("bearer", "api_key", "requests", "rounds")

    def __init__(self, api_key: str | None, requests: list[dict[str, Any]] | None):
        self.api_key = api_key
        self.bearer = f"Bearer {api_key}" if api_key else None
        self.requests = requests
        # Responses id -> (tool rounds so far, last user text): a request that continues with
        # `previous_response_id` carries only the tool outputs, not the conversation.
        self.rounds: dict[str, tuple[int, str]] = {}

    def remember(self, response_id: str, rounds: int, text: str) -> None:
        if len(self.rounds) >= _ROUNDS_KEPT:
            del self.rounds[next(iter(self.rounds))]
        self.rounds[response_id] = (rounds, text)


_STATE = web.AppKey("meterline_sim_state", _State)


# ---------------------------------------------------------------------------
# deterministic content and token accounting


def _piece(i: int) -> str:
    return ("" if i == 0 else " ") + _PAIRS[i % len(_PAIRS)]


@lru_cache(maxsize=256)
def _pieces(n: int) -> tuple[str, ...]:
    return tuple(_piece(i) for i in range(n))


@lru_cache(maxsize=256)
def completion_text(chunks: int = DEFAULT_CHUNKS) -> str:
    """The full text the simulator answers with for `chunks` content chunks (2 words each)."""
    return "".join(_pieces(chunks))


def _directives(text: str) -> dict[str, int]:
    if "sim:" not in text:  # the hot path: no regex, no dict building
        return {}
    out: dict[str, int] = {}
    for m in _DIRECTIVE.finditer(text):
        for kv in m.group(1).split(","):
            if kv:
                k, v = kv.split("=")
                out[k] = int(v)
    return out


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
    return ""


def _words(text: str) -> int:
    return len(text.split())


def _messages_tokens(messages: list[Any], extra: str = "") -> int:
    n = _words(extra) + (PER_MESSAGE_TOKENS if extra else 0)
    for m in messages:
        if isinstance(m, dict):
            n += _words(_text(m.get("content"))) + PER_MESSAGE_TOKENS
    return n


def _last_user_text(messages: Any) -> str:
    if isinstance(messages, str):
        return messages
    if not isinstance(messages, list) or not messages:
        return ""
    for m in reversed(messages):
        if isinstance(m, dict) and m.get("role") == "user":
            return _text(m.get("content"))
    last = messages[-1]
    return _text(last.get("content")) if isinstance(last, dict) else ""


def _completion_tokens(d: dict[str, int], content_tokens: int) -> int:
    if "output_tokens" in d:
        return d["output_tokens"]
    # OpenAI counts reasoning tokens inside completion tokens.
    return content_tokens + d.get("reasoning", 0)


def _tier(d: dict[str, int]) -> str:
    return _TIERS.get(d.get("tier", 0), "default")


def _prompt(prompt: int, d: dict[str, int]) -> int:
    return d.get("prompt_tokens", prompt)


def _junk(usage: dict[str, Any], d: dict[str, int], prompt_key: str, details: tuple[str, ...]) -> dict[str, Any]:
    """Usage as a broken or hostile provider might report it (the `junk` directive)."""
    j = d.get("junk")
    if j in _JUNK:
        usage[prompt_key] = _JUNK[j]
    elif j == 6:
        for k, v in usage.items():
            if isinstance(v, int):
                usage[k] = 10**9
            elif isinstance(v, dict) and k in details:
                usage[k] = {dk: 10**9 if isinstance(dv, int) else dv for dk, dv in v.items()}
    return usage


def _chat_usage(prompt: int, completion: int, d: dict[str, int]) -> dict[str, Any]:
    # Audio is counted within prompt and completion tokens, as OpenAI counts it.
    prompt = _prompt(prompt, d) + d.get("audio_in", 0)
    completion += d.get("audio_out", 0)
    cached = d.get("cached", 0)
    prompt = max(prompt, cached)
    details: dict[str, int] = {"cached_tokens": cached, "audio_tokens": d.get("audio_in", 0)}
    if "cache_write" in d:
        details["cache_write_tokens"] = d["cache_write"]
    usage = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": details,
        "completion_tokens_details": {
            "reasoning_tokens": d.get("reasoning", 0),
            "audio_tokens": d.get("audio_out", 0),
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }
    return _junk(usage, d, "prompt_tokens", ("prompt_tokens_details", "completion_tokens_details")) if "junk" in d else usage


def _responses_usage(prompt: int, completion: int, d: dict[str, int]) -> dict[str, Any]:
    prompt = _prompt(prompt, d)
    cached = d.get("cached", 0)
    prompt = max(prompt, cached)
    details: dict[str, int] = {"cached_tokens": cached}
    if "cache_write" in d:
        details["cache_write_tokens"] = d["cache_write"]
    usage = {
        "input_tokens": prompt,
        "input_tokens_details": details,
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": d.get("reasoning", 0)},
        "total_tokens": prompt + completion,
    }
    return _junk(usage, d, "input_tokens", ("input_tokens_details", "output_tokens_details")) if "junk" in d else usage


def _anthropic_usage(prompt: int, output: int, d: dict[str, int]) -> dict[str, Any]:
    # Anthropic's three input counters are disjoint: input_tokens excludes cache reads and writes.
    usage: dict[str, Any] = {
        "input_tokens": _prompt(prompt, d),
        "cache_creation_input_tokens": d.get("cache_write", 0),
        "cache_read_input_tokens": d.get("cached", 0),
        "output_tokens": output,
    }
    if "write_hour" in d:  # the TTL split Anthropic reports for prompt caching with `ttl: 1h`
        usage["cache_creation"] = {
            "ephemeral_5m_input_tokens": d.get("cache_write", 0) - d["write_hour"],
            "ephemeral_1h_input_tokens": d["write_hour"],
        }
    if "web_search" in d:
        usage["server_tool_use"] = {"web_search_requests": d["web_search"]}
    usage["service_tier"] = "standard"
    return usage


# ---------------------------------------------------------------------------
# request plumbing


def _dumps(obj: Any) -> bytes:
    try:
        return orjson.dumps(obj)
    except TypeError:  # the `junk` directive's 10^30: past orjson's 64-bit integers
        return json.dumps(obj, separators=(",", ":")).encode()


def _json(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=_dumps(obj), status=status, headers=_JSON)


def _openai_error(status: int, message: str) -> web.Response:
    etype, code = _OPENAI_ERRORS.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", None)
    )
    return _json(
        {"error": {"message": message, "type": etype, "param": None, "code": code}}, status
    )


def _anthropic_error(status: int, message: str) -> web.Response:
    etype = _ANTHROPIC_ERRORS.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return _json({"type": "error", "error": {"type": etype, "message": message}}, status)


def _endpoint(anthropic: bool = False):
    """Wrap a handler(request, body) with auth, JSON parsing and recording (no middleware: it is cheaper)."""
    error = _anthropic_error if anthropic else _openai_error

    def wrap(fn):
        async def handler(request: web.Request) -> web.StreamResponse:
            st = request.app[_STATE]
            if st.api_key is not None:
                if anthropic:
                    ok = request.headers.get("x-api-key") == st.api_key
                else:
                    ok = request.headers.get("Authorization") == st.bearer
                if not ok:
                    return error(
                        401, "invalid x-api-key" if anthropic else "Incorrect API key provided."
                    )
            raw = await request.read()
            try:
                body = orjson.loads(raw) if raw else {}
            except orjson.JSONDecodeError:
                return error(400, "We could not parse the JSON body of your request.")
            if not isinstance(body, dict):
                return error(400, "The request body must be a JSON object.")
            if st.requests is not None:
                st.requests.append(
                    {
                        "method": request.method,
                        "path": request.path,
                        "headers": {k.lower(): v for k, v in request.headers.items()},
                        "json": body,
                    }
                )
            return await fn(request, body)

        handler.__name__ = fn.__name__
        return handler

    return wrap


async def _gate(d: dict[str, int], anthropic: bool = False) -> web.Response | None:
    """Apply the directives that act before any answer: hang, status, delay."""
    if not d:
        return None
    if d.get("hang"):
        await asyncio.sleep(3600)  # cancelled when the client goes away (handler_cancellation)
    status = d.get("status", 0)
    if status >= 400:
        msg = f"Simulated upstream error (HTTP {status})"
        return _anthropic_error(status, msg) if anthropic else _openai_error(status, msg)
    if d.get("delay_ms"):
        await asyncio.sleep(d["delay_ms"] / 1000)
    return None


async def _stream(
    request: web.Request, head: list[bytes], body: list[bytes], tail: list[bytes], d: dict[str, int]
) -> web.StreamResponse:
    resp = web.StreamResponse(headers=_SSE)
    await resp.prepare(request)
    await resp.write(b"".join(head))
    delay = d.get("delay_ms", 0) / 1000 if d else 0
    brk = d.get("break_after") if d else None
    for frame in body if brk is None else body[:brk]:
        if delay:
            await asyncio.sleep(delay)
        await resp.write(frame)
    if brk is not None:
        # Drop the TCP connection mid-body: the chunked stream never gets its terminating chunk.
        if request.transport is not None:  # None: the client has gone already
            request.transport.abort()
        raise asyncio.CancelledError
    await resp.write(b"".join(tail))
    await resp.write_eof()
    return resp


def _data(obj: Any) -> bytes:
    return b"data: " + _dumps(obj) + b"\n\n"


def _event(name: str, obj: Any) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + _dumps(obj) + b"\n\n"


# ---------------------------------------------------------------------------
# OpenAI chat completions


def _tool_specs(tools: Any) -> list[tuple[str, Any]]:
    """(name, JSON schema of the parameters) of each tool, chat or Responses shaped."""
    if not isinstance(tools, list):
        return []
    out = []
    for t in tools:
        if not isinstance(t, dict):
            continue
        fn = t.get("function")
        fn = fn if isinstance(fn, dict) else t
        out.append((fn.get("name") or t.get("name") or "tool", fn.get("parameters")))
    return out


def _arguments(schema: Any, text: str) -> str:
    """JSON arguments for a tool: each required property filled from the request."""
    args: dict[str, Any] = {}
    if isinstance(schema, dict):
        props = schema.get("properties")
        props = props if isinstance(props, dict) else {}
        for name in schema.get("required") or ():
            prop = props.get(name)
            kind = prop.get("type") if isinstance(prop, dict) else None
            if kind == "string" or kind is None:
                args[name] = text
            elif kind in ("integer", "number"):
                args[name] = 1
            elif kind == "boolean":
                args[name] = True
    return orjson.dumps(args).decode()


def _tool_calls(tools: Any, d: dict[str, int], text: str, rounds: int) -> list[tuple[str, str]]:
    """(name, arguments) of the tools to call in this answer: none once the rounds are done."""
    specs = _tool_specs(tools)
    if not specs or rounds >= d.get("turns", 1):
        return []
    if rounds:
        text = f"{text} #{rounds + 1}"
    return [(name, _arguments(schema, text)) for name, schema in specs[: max(1, d.get("tools", 1))]]


def _chat_rounds(messages: Any) -> int:
    """Assistant tool-call messages since the last user message."""
    rounds = 0
    m: Any
    for m in reversed(messages if isinstance(messages, list) else ()):
        if not isinstance(m, dict) or m.get("role") == "user":
            break
        if m.get("role") == "assistant" and m.get("tool_calls"):
            rounds += 1
    return rounds


def _anthropic_rounds(messages: Any) -> int:
    """Assistant tool_use turns since the last user message that is not a tool result."""
    rounds = 0
    m: Any
    for m in reversed(messages if isinstance(messages, list) else ()):
        if not isinstance(m, dict):
            break
        content: Any = m.get("content")
        blocks = content if isinstance(content, list) else []
        kinds = {b.get("type") for b in blocks if isinstance(b, dict)}
        if m.get("role") == "user" and "tool_result" not in kinds:
            break
        if m.get("role") == "assistant" and "tool_use" in kinds:
            rounds += 1
    return rounds


def _split(s: str, parts: int = 3) -> list[str]:
    """`s` in up to `parts` pieces, as providers stream tool arguments."""
    size = max(1, -(-len(s) // parts))
    return [s[i : i + size] for i in range(0, len(s), size)] or [""]


@_endpoint()
async def chat_completions(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
    messages = body.get("messages") or []
    d = _directives(_last_user_text(messages))
    if (early := await _gate(d)) is not None:
        return early
    model = body.get("model", "")
    chunks = d.get("chunks", DEFAULT_CHUNKS)
    # Call tools only until the rounds are done (after one tool result by default), so agent loops end.
    last_role = messages[-1].get("role") if messages and isinstance(messages[-1], dict) else None
    done = last_role == "tool" and "turns" not in d
    calls = [] if done else _tool_calls(body.get("tools"), d, _last_user_text(messages), _chat_rounds(messages))
    cid, created = _random_id("chatcmpl-", 29), int(time.time())
    prompt = _messages_tokens(messages if isinstance(messages, list) else [])
    completion = _completion_tokens(d, TOOL_CALL_TOKENS if calls else 2 * chunks)
    usage = None if d.get("no_usage") else _chat_usage(prompt, completion, d)
    tool_calls: list[dict[str, Any]] = [
        {"id": _random_id("call_"), "type": "function", "function": {"name": name, "arguments": args}}
        for name, args in calls
    ]
    tool = bool(tool_calls)

    if not body.get("stream"):
        if tool:
            message = {
                "role": "assistant",
                "content": None,
                "tool_calls": tool_calls,
                "refusal": None,
            }
        else:
            message = {"role": "assistant", "content": completion_text(chunks), "refusal": None}
        out: dict[str, Any] = {
            "id": cid,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "service_tier": _tier(d),
            "system_fingerprint": "fp_sim",
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": "tool_calls" if tool else "stop",
                }
            ],
        }
        if usage is not None:
            out["usage"] = usage
        return _json(out)

    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    base: dict[str, Any] = {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "service_tier": _tier(d),
        "system_fingerprint": "fp_sim",
    }
    if include_usage:
        base["usage"] = None

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        return _data(
            {
                **base,
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                ],
            }
        )

    if tool:
        # Like OpenAI: the first call opens in the role chunk, each further one in its own.
        head: list[bytes] = []
        frames: list[bytes] = []
        for i, tc in enumerate(tool_calls):
            opening = {**tc, "index": i, "function": {"name": tc["function"]["name"], "arguments": ""}}
            if i == 0:
                head.append(chunk({"role": "assistant", "content": None, "tool_calls": [opening], "refusal": None}))
            else:
                frames.append(chunk({"tool_calls": [opening]}))
            frames += [
                chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]})
                for piece in _split(tc["function"]["arguments"])
            ]
    else:
        head = [chunk({"role": "assistant", "content": "", "refusal": None})]
        frames = [chunk({"content": p}) for p in _pieces(chunks)]
    tail = [chunk({}, "tool_calls" if tool else "stop")]
    if include_usage and usage is not None:
        tail.append(_data({**base, "choices": [], "usage": usage}))
    tail.append(_DONE)
    return await _stream(request, head, frames, tail, d)


# ---------------------------------------------------------------------------
# OpenAI legacy completions and embeddings


@_endpoint()
async def completions(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
    prompt = body.get("prompt", "")
    texts = (
        [prompt]
        if isinstance(prompt, str)
        else [p for p in prompt if isinstance(p, str)]
        if isinstance(prompt, list)
        else []
    )
    d = _directives(" ".join(texts))
    if (early := await _gate(d)) is not None:
        return early
    chunks = d.get("chunks", DEFAULT_CHUNKS)
    completion = _completion_tokens(d, 2 * chunks)
    usage = None if d.get("no_usage") else _chat_usage(sum(map(_words, texts)), completion, d)
    base: dict[str, Any] = {
        "id": _random_id("cmpl-", 29),
        "object": "text_completion",
        "created": int(time.time()),
        "model": body.get("model", ""),
    }

    if not body.get("stream"):
        out = {
            **base,
            "choices": [
                {
                    "text": completion_text(chunks),
                    "index": 0,
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
        }
        if usage is not None:
            out["usage"] = usage
        return _json(out)

    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    if include_usage:
        base["usage"] = None

    def chunk(text: str, finish: str | None = None) -> bytes:
        return _data(
            {
                **base,
                "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish}],
            }
        )

    tail = [chunk("", "stop")]
    if include_usage and usage is not None:
        tail.append(_data({**base, "choices": [], "usage": usage}))
    tail.append(_DONE)
    return await _stream(request, [], [chunk(p) for p in _pieces(chunks)], tail, d)


def _embedding(seed_text: str, dims: int) -> list[float]:
    seed = zlib.crc32(seed_text.encode())
    return [((seed * (i + 1) * 2654435761) & 0xFFFF) / 32768.0 - 1.0 for i in range(dims)]


@_endpoint()
async def embeddings(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
    raw = body.get("input", "")
    if isinstance(raw, str) or (isinstance(raw, list) and raw and isinstance(raw[0], int)):
        inputs = [raw]  # one string, or one token array
    else:
        inputs = raw if isinstance(raw, list) else []
    d = _directives(" ".join(x for x in inputs if isinstance(x, str)))
    if (early := await _gate(d)) is not None:
        return early
    dims = body.get("dimensions") or 8
    as_b64 = body.get("encoding_format") == "base64"  # the openai SDK asks for base64 by default
    data, tokens = [], 0
    for i, x in enumerate(inputs):
        tokens += _words(x) if isinstance(x, str) else len(x)
        vec = _embedding(x if isinstance(x, str) else repr(x), dims)
        emb: Any = base64.b64encode(struct.pack(f"<{dims}f", *vec)).decode() if as_b64 else vec
        data.append({"object": "embedding", "index": i, "embedding": emb})
    out: dict[str, Any] = {"object": "list", "data": data, "model": body.get("model", "")}
    if not d.get("no_usage"):
        out["usage"] = {"prompt_tokens": tokens, "total_tokens": tokens}
    return _json(out)


_MODELS_BODY = orjson.dumps(
    {
        "object": "list",
        "data": [
            {"id": m, "object": "model", "created": 1700000000, "owned_by": "meterline-sim"}
            for m in MODELS
        ],
    }
)


async def models(request: web.Request) -> web.Response:
    st = request.app[_STATE]
    if st.bearer is not None and request.headers.get("Authorization") != st.bearer:
        return _openai_error(401, "Incorrect API key provided.")
    return web.Response(body=_MODELS_BODY, headers=_JSON)


# ---------------------------------------------------------------------------
# OpenAI Responses API


def _responses_input(inp: Any) -> tuple[str, int]:
    """(directive text, prompt tokens) of a Responses `input`."""
    if isinstance(inp, str):
        return inp, _words(inp) + PER_MESSAGE_TOKENS
    if not isinstance(inp, list):
        return "", 0
    items = [
        {"role": i.get("role"), "content": i.get("content", i.get("output", ""))}
        for i in inp
        if isinstance(i, dict)
    ]
    return _last_user_text(items), _messages_tokens(items)


def _responses_rounds(inp: Any) -> tuple[bool, int, bool]:
    """(has a user message, tool rounds since the last one, ends with a tool output).

    A round is a run of consecutive `function_call` items (parallel calls are one round)."""
    if not isinstance(inp, list):
        return isinstance(inp, str), 0, False
    items = [i for i in inp if isinstance(i, dict)]
    start = next((n for n in range(len(items) - 1, -1, -1) if items[n].get("role") == "user"), -1)
    rounds, prev = 0, None
    for item in items[start + 1 :]:
        kind = item.get("type")
        rounds += kind == "function_call" and prev != "function_call"
        prev = kind
    after_output = bool(items) and items[-1].get("type") == "function_call_output"
    return start >= 0, rounds, after_output


@_endpoint()
async def responses(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
    st = request.app[_STATE]
    instructions = body.get("instructions")
    inp = body.get("input", "")
    text_in, prompt = _responses_input(inp)
    has_user, rounds, after_output = _responses_rounds(inp)
    tools = body.get("tools")
    previous = st.rounds.get(body.get("previous_response_id") or "") if tools else None
    if previous is not None and not has_user:
        # A continuation carries only the new items: the conversation so far is upstream's.
        rounds, text_in = rounds + previous[0], previous[1]
    if isinstance(instructions, str):
        prompt += _words(instructions) + PER_MESSAGE_TOKENS
    d = _directives(text_in)
    if (early := await _gate(d)) is not None:
        return early
    chunks = d.get("chunks", DEFAULT_CHUNKS)
    rid, mid, created = _hex_id("resp_"), _hex_id("msg_"), int(time.time())
    done = after_output and "turns" not in d
    calls = [] if done else _tool_calls(tools, d, text_in, rounds)
    if tools:
        st.remember(rid, rounds + (1 if calls else 0), text_in)
    text = completion_text(chunks)
    usage = (
        None
        if d.get("no_usage")
        else _responses_usage(prompt, _completion_tokens(d, TOOL_CALL_TOKENS if calls else 2 * chunks), d)
    )
    function_calls: list[dict[str, Any]] = [
        {
            "id": _hex_id("fc_"),
            "type": "function_call",
            "status": "completed",
            "arguments": args,
            "call_id": _random_id("call_"),
            "name": name,
        }
        for name, args in calls
    ]
    part = {"type": "output_text", "annotations": [], "logprobs": [], "text": text}
    message = {
        "id": mid,
        "type": "message",
        "status": "completed",
        "role": "assistant",
        "content": [part],
    }

    searches = [
        {"id": _hex_id("ws_"), "type": "web_search_call", "status": "completed", "action": {"type": "search", "query": "sim"}}
        for i in range(d.get("web_search", 0))
    ]

    def response(status: str, output: list[Any]) -> dict[str, Any]:
        r: dict[str, Any] = {
            "id": rid,
            "object": "response",
            "created_at": created,
            "status": status,
            "background": False,
            "error": None,
            "incomplete_details": None,
            "instructions": instructions,
            "max_output_tokens": body.get("max_output_tokens"),
            "model": body.get("model", ""),
            "output": output,
            "parallel_tool_calls": True,
            "previous_response_id": body.get("previous_response_id"),
            "reasoning": {"effort": None, "summary": None},
            "service_tier": _tier(d),
            "store": body.get("store", True),
            "temperature": body.get("temperature", 1.0),
            "text": {"format": {"type": "text"}},
            "tool_choice": body.get("tool_choice", "auto"),
            "tools": body.get("tools", []),
            "top_p": body.get("top_p", 1.0),
            "truncation": "disabled",
            "user": None,
            "metadata": body.get("metadata") or {},
        }
        if status != "completed":
            r["usage"] = None
        else:
            r["completed_at"] = created
            if usage is not None:
                r["usage"] = usage
        return r

    answer = [*searches, *(function_calls or [message])]
    if not body.get("stream"):
        return _json(response("completed", answer))

    seq = itertools.count()

    def ev(name: str, **fields: Any) -> bytes:
        return _event(name, {"type": name, "sequence_number": next(seq), **fields})

    at = len(searches)  # the message follows the searches in `output`
    loc = {"item_id": mid, "output_index": at, "content_index": 0}
    head = [
        ev("response.created", response=response("in_progress", [])),
        ev("response.in_progress", response=response("in_progress", [])),
    ]
    for i, ws in enumerate(searches):
        head += [
            ev("response.output_item.added", output_index=i, item={**ws, "status": "in_progress"}),
            ev("response.web_search_call.in_progress", output_index=i, item_id=ws["id"]),
            ev("response.web_search_call.searching", output_index=i, item_id=ws["id"]),
            ev("response.web_search_call.completed", output_index=i, item_id=ws["id"]),
            ev("response.output_item.done", output_index=i, item=ws),
        ]
    if function_calls:
        frames, tail = [], []
        for i, fc in enumerate(function_calls, start=at):
            where = {"item_id": fc["id"], "output_index": i}
            frames.append(ev("response.output_item.added", output_index=i, item={**fc, "status": "in_progress", "arguments": ""}))
            frames += [ev("response.function_call_arguments.delta", **where, delta=p) for p in _split(fc["arguments"])]
            frames += [
                ev("response.function_call_arguments.done", **where, arguments=fc["arguments"]),
                ev("response.output_item.done", output_index=i, item=fc),
            ]
        tail.append(ev("response.completed", response=response("completed", answer)))
        return await _stream(request, head, frames, tail, d)
    head += [
        ev(
            "response.output_item.added",
            output_index=at,
            item={**message, "status": "in_progress", "content": []},
        ),
        ev("response.content_part.added", **loc, part={**part, "text": ""}),
    ]
    frames = [
        ev("response.output_text.delta", **loc, delta=p, logprobs=[]) for p in _pieces(chunks)
    ]
    tail = [
        ev("response.output_text.done", **loc, text=text, logprobs=[]),
        ev("response.content_part.done", **loc, part=part),
        ev("response.output_item.done", output_index=at, item=message),
        ev("response.completed", response=response("completed", answer)),
    ]
    return await _stream(request, head, frames, tail, d)


# ---------------------------------------------------------------------------
# Anthropic Messages API


@_endpoint(anthropic=True)
async def anthropic_messages(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
    messages = body.get("messages") or []
    d = _directives(_last_user_text(messages))
    if (early := await _gate(d, anthropic=True)) is not None:
        return early
    chunks = d.get("chunks", DEFAULT_CHUNKS)
    output = d.get("output_tokens", 2 * chunks)
    prompt = _messages_tokens(
        messages if isinstance(messages, list) else [], _text(body.get("system"))
    )
    usage = None if d.get("no_usage") else _anthropic_usage(prompt, output, d)
    mid, model = _random_id("msg_"), body.get("model", "")
    tools = [{"name": t.get("name"), "parameters": t.get("input_schema")} for t in body.get("tools") or () if isinstance(t, dict)]
    uses = [
        {"type": "tool_use", "id": _random_id("toolu_"), "name": name, "input": orjson.loads(args)}
        for name, args in _tool_calls(tools, d, _last_user_text(messages), _anthropic_rounds(messages))
    ]

    if not body.get("stream"):
        out: dict[str, Any] = {
            "id": mid,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": uses or [{"type": "text", "text": completion_text(chunks)}],
            "stop_reason": "tool_use" if uses else "end_turn",
            "stop_sequence": None,
        }
        if usage is not None:
            out["usage"] = usage
        return _json(out)

    start: dict[str, Any] = {
        "id": mid,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
    }
    if usage is not None:
        start["usage"] = {
            **usage,
            "output_tokens": 1,
        }  # like Anthropic: a placeholder until message_delta
    delta: dict[str, Any] = {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use" if uses else "end_turn", "stop_sequence": None},
    }
    if usage is not None:
        delta["usage"] = {"output_tokens": output}
        if "server_tool_use" in usage:
            delta["usage"]["server_tool_use"] = usage["server_tool_use"]
    head = [
        _event("message_start", {"type": "message_start", "message": start}),
        _event(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
        _event("ping", {"type": "ping"}),
    ]
    frames = [
        _event(
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}},
        )
        for p in _pieces(chunks)
    ]
    tail = [_event("content_block_stop", {"type": "content_block_stop", "index": 0})]
    for i, use in enumerate(uses, start=1):  # after a short text block, as Claude often answers
        start_block = {"type": "content_block_start", "index": i, "content_block": {**use, "input": {}}}
        tail.append(_event("content_block_start", start_block))
        for piece in _split(orjson.dumps(use["input"]).decode()):
            tail.append(_event("content_block_delta", {"type": "content_block_delta", "index": i,
                                                       "delta": {"type": "input_json_delta", "partial_json": piece}}))  # fmt: skip
        tail.append(_event("content_block_stop", {"type": "content_block_stop", "index": i}))
    tail += [
        _event("message_delta", delta),
        _event("message_stop", {"type": "message_stop"}),
    ]
    return await _stream(request, head, frames, tail, d)


# ---------------------------------------------------------------------------
# out-of-process inspection


async def recorded_requests(request: web.Request) -> web.Response:
    return web.Response(body=orjson.dumps(list(request.app[_STATE].requests or ())), headers=_JSON)


async def clear_requests(request: web.Request) -> web.Response:
    reqs = request.app[_STATE].requests
    if reqs is not None:
        reqs.clear()
    return web.Response(status=204)


def create_app(
    api_key: str | None = None, *, record: bool = True, requests: Any = None
) -> web.Application:
    """The simulator app.  Requests are appended to `requests` (a list, or anything with
    append/clear/iteration; a new list if None) unless record=False."""
    app = web.Application(client_max_size=64 * 1024**2)
    app[_STATE] = _State(api_key, (requests if requests is not None else []) if record else None)
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/completions", completions)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/responses", responses)
    app.router.add_post("/v1/messages", anthropic_messages)
    app.router.add_get("/_sim/requests", recorded_requests)
    app.router.add_delete("/_sim/requests", clear_requests)
    return app


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:
        return asyncio.new_event_loop()


class SimServer:
    """The simulator on 127.0.0.1 in a background thread with its own event loop.

    `.url` is the base URL (no /v1); `.requests` is the list of received requests
    (dicts: method, path, headers with lower-case keys, json); list.append/clear
    are atomic under the GIL, so it is safe to read and clear from the test thread.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        record: bool = True,
    ):
        self.api_key, self.host, self.port, self.record = api_key, host, port, record
        self.requests: list[dict[str, Any]] = []
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> SimServer:
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = self._loop = _new_loop()
            asyncio.set_event_loop(loop)
            try:
                app = create_app(self.api_key, record=self.record, requests=self.requests)
                # handler_cancellation: a hung handler (sim:hang=1) ends when its client disconnects.
                runner = web.AppRunner(
                    app, access_log=None, handler_cancellation=True, shutdown_timeout=0.1
                )
                loop.run_until_complete(runner.setup())
                site = web.TCPSite(runner, self.host, self.port, backlog=1024)
                loop.run_until_complete(site.start())
                self._runner = runner
                self.port = runner.addresses[0][1]
                self.url = f"http://{self.host}:{self.port}"
            except BaseException as e:  # noqa: BLE001 - handed to the starting thread
                failure.append(e)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, name="meterline-sim-upstream", daemon=True)
        self._thread.start()
        ready.wait(15)
        if failure:
            raise failure[0]
        if not self.url:
            raise RuntimeError("simulator did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop = self._thread = self._runner = None

    def __enter__(self) -> SimServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m meterline.testing.upstream", description=__doc__.splitlines()[0]
    )
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8900)
    ap.add_argument("--api-key", default=None, help="require this key (Bearer / x-api-key)")
    ap.add_argument(
        "--no-record", action="store_true", help="do not keep requests for /_sim/requests"
    )
    ap.add_argument(
        "--max-requests", type=int, default=10_000, help="keep only the latest N recorded requests"
    )
    args = ap.parse_args(argv)
    # Bounded: a long benchmark against the foreground server must not grow memory without limit.
    recorded: collections.deque[dict[str, Any]] = collections.deque(maxlen=args.max_requests)
    web.run_app(
        create_app(args.api_key, record=not args.no_record, requests=recorded),
        host=args.host,
        port=args.port,
        access_log=None,
        handler_cancellation=True,
        shutdown_timeout=1,
        loop=_new_loop(),
        print=lambda *_: print(
            f"meterline upstream simulator on http://{args.host}:{args.port}", flush=True
        ),
    )


if __name__ == "__main__":
    main()
