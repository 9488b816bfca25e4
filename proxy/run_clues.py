"""Where the clues that tie agent runs together sit in OpenAI's and MCP's messages.

What a response produces (costing/run_links.py): the ids of the tool calls it asks for, with
a digest of each call's arguments, and a Responses API response's own id. What a request
refers to: the latest turn of the conversation it continues. Nothing here runs for a call
whose body names no tool call (a byte search decides), so plain chat pays nothing.
"""

from __future__ import annotations

from typing import Any

from meterline.costing.run_links import (
    MAX_ARGS_BYTES,
    MAX_CLUES,
    NO_PRODUCE,
    Asked,
    Produced,
    arguments_clue,
    response_clue,
    tool_call_clue,
    usable,
)

MAX_SCAN = 256  # messages read back from the end of a conversation for its latest turn

# ---------------------------------------------------------------------------
# Requests: the turn a request continues


def asked_by_request(path: str, doc: dict[str, Any], body: bytes) -> Asked | None:
    """The clues of the response this LLM request continues, or None (a new conversation)."""
    if path == "/chat/completions":
        return _chat_asked(doc) if b"tool_call" in body else None
    if path == "/responses":
        prev = doc.get("previous_response_id")
        clues = [response_clue(prev)] if usable(prev) and isinstance(prev, str) else []
        if b'"call_id"' in body:
            clues += _responses_asked(doc.get("input"))
        return Asked(tuple(clues)) if clues else None
    return None


def _chat_asked(doc: dict[str, Any]) -> Asked | None:
    """The tool calls of the latest assistant turn, and the tool results answering them."""
    messages = doc.get("messages")
    if type(messages) is not list:
        return None
    clues: list[str] = []
    for m in reversed(messages[-MAX_SCAN:]):
        if type(m) is not dict:
            continue
        role = m.get("role")
        if role == "tool":
            _add(clues, m.get("tool_call_id"))
        elif role == "assistant":
            for tc in _list(m.get("tool_calls"))[:MAX_CLUES]:
                _add(clues, tc.get("id") if type(tc) is dict else None)
            break  # the latest assistant turn: what came before it is older history
        elif role in ("user", "system", "developer"):
            break
        if len(clues) >= MAX_CLUES:
            break
    return Asked(tuple(dict.fromkeys(clues))) if clues else None


def _responses_asked(items: Any) -> list[str]:
    """call_ids of the function calls (and their outputs) that end a Responses API input."""
    clues: list[str] = []
    for item in reversed(_list(items)[-MAX_SCAN:]):
        kind = item.get("type") if type(item) is dict else None
        if kind in ("function_call", "function_call_output", "custom_tool_call", "custom_tool_call_output"):
            _add(clues, item.get("call_id"))
        elif kind == "reasoning":
            continue
        elif clues or kind in ("message", None):
            break
        if len(clues) >= MAX_CLUES:
            break
    return list(dict.fromkeys(clues))


def _add(clues: list[str], call_id: object) -> None:
    if isinstance(call_id, str) and usable("c:" + call_id):
        clues.append(tool_call_clue(call_id))


def _list(v: Any) -> list[Any]:
    return v if type(v) is list else []


def asked_by_tool_call(name: str, params: Any) -> Asked | None:
    """An MCP tools/call: the digest of its arguments, to find the LLM call that asked for it."""
    if not name or type(params) is not dict:
        return None
    clue = arguments_clue(params.get("arguments"))
    return Asked((clue,), name) if clue else None


# ---------------------------------------------------------------------------
# Responses: what an LLM response produced


def produced_by_body(path: str, doc: dict[str, Any] | None) -> Produced:
    """What a whole (non-streamed) response produced."""
    if doc is None:
        return NO_PRODUCE
    if path == "/chat/completions":
        calls: list[tuple[Any, Any, Any]] = []
        for choice in _list(doc.get("choices"))[:MAX_CLUES]:
            msg = choice.get("message") if type(choice) is dict else None
            for tc in _list(msg.get("tool_calls") if type(msg) is dict else None)[:MAX_CLUES]:
                fn = tc.get("function") if type(tc) is dict else None
                if type(fn) is dict:
                    calls.append((tc.get("id"), fn.get("name"), fn.get("arguments")))
        return _produced(None, calls)
    if path == "/responses":
        return produced_by_response(doc)
    return NO_PRODUCE


def produced_by_response(doc: dict[str, Any]) -> Produced:
    """A Responses API response object: its id and its function calls."""
    calls = [
        (item.get("call_id"), item.get("name"), item.get("arguments"))
        for item in _list(doc.get("output"))[:MAX_CLUES]
        if type(item) is dict and item.get("type") in ("function_call", "custom_tool_call")
    ]
    return _produced(doc.get("id"), calls)


def _produced(response_id: object, calls: list[tuple[Any, Any, Any]]) -> Produced:
    clues: list[str] = []
    tools: list[str] = []
    if isinstance(response_id, str) and usable("r:" + response_id):
        clues.append(response_clue(response_id))
    for call_id, name, arguments in calls[:MAX_CLUES]:
        if isinstance(call_id, str) and usable("c:" + call_id):
            clues.append(tool_call_clue(call_id))
        digest = arguments_clue(arguments) if isinstance(name, str) and name else None
        if digest is not None:
            clues.append(digest)
            tools.append(name[:256])
    return Produced(tuple(clues), tuple(tools)) if clues else NO_PRODUCE


class StreamedToolCalls:
    """Tool calls of a streamed chat completion, put together from their deltas: the id and
    name come in the first delta of each call, the arguments in pieces after. Bounded: at most
    MAX_CLUES calls, and arguments past MAX_ARGS_BYTES in all are not kept (those calls still
    give their ids)."""

    __slots__ = ("_calls", "_size")

    def __init__(self) -> None:
        self._calls: dict[tuple[int, int], list[Any]] = {}  # (choice, index) -> [id, name, [pieces]]
        self._size = 0

    def feed(self, chunk: dict[str, Any]) -> None:
        for choice in _list(chunk.get("choices"))[:MAX_CLUES]:
            delta = choice.get("delta") if type(choice) is dict else None
            if type(delta) is not dict:
                continue
            c = choice.get("index", 0)
            for tc in _list(delta.get("tool_calls"))[:MAX_CLUES]:
                if type(tc) is not dict:
                    continue
                i = tc.get("index")
                slot = (c if type(c) is int else 0, i if type(i) is int else 0)
                call = self._calls.get(slot)
                if call is None:
                    if len(self._calls) >= MAX_CLUES:
                        continue
                    call = self._calls[slot] = [None, None, []]
                if isinstance(tc.get("id"), str):
                    call[0] = tc["id"]
                fn = tc.get("function")
                if type(fn) is dict:
                    if isinstance(fn.get("name"), str):
                        call[1] = fn["name"]
                    piece = fn.get("arguments")
                    if isinstance(piece, str) and piece and call[2] is not None:
                        self._size += len(piece)
                        if self._size > MAX_ARGS_BYTES:
                            call[2] = None  # too long to digest
                        else:
                            call[2].append(piece)

    def produced(self) -> Produced:
        calls = [(i, n, "".join(p) if p is not None else None) for i, n, p in self._calls.values()]
        return _produced(None, [(i, n if a is not None else None, a) for i, n, a in calls])


__all__ = [
    "StreamedToolCalls",
    "asked_by_request",
    "asked_by_tool_call",
    "produced_by_body",
    "produced_by_response",
]
