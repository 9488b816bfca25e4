"""Metering MCP traffic: which JSON-RPC messages are calls, what they cost, and when they end.

Every JSON-RPC request a client POSTs is one metered call (`kind=mcp`, `method` set; for
`tools/call` also `tool`). It ends with the JSON-RPC response of the same id, found in a
JSON body or an SSE stream. Notifications and the client's answers to server requests are
forwarded and not metered.

Statuses: `ok`, `tool_error` (a result with `isError: true`, which arrives as HTTP 200),
`protocol_error` (a JSON-RPC `error`), `upstream_error` (HTTP error without a JSON-RPC
answer, unreachable, stream broken), `client_closed`, `rejected` (budget).

A 2026-07-28 multi-round tool call (results with `resultType: input_required`, continued by a
new request carrying `requestState`) is one call: rounds that end `input_required` are parked
in `Rounds`, and the round that completes records the call with the bytes and the proxy-side
time of all its rounds.
"""

from __future__ import annotations

import itertools
import json
import time
from collections import OrderedDict, deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from meterline.costing.config import MCPServerConfig
from meterline.costing.money import ZERO

from .meter import Call, Meter
from .sse import event_data, has_event_id, replace_event_data
from .tracestate import merge

DUPLICATE = "#"  # between a repeated id's key and its slot number

# Statuses for which the server did the work, so the call is charged.
CHARGED = frozenset(("ok", "tool_error", "client_closed"))


def loads(data: bytes) -> Any:
    """JSON as the stdlib reads it: unlike orjson it keeps integers past 64 bits exact, so a
    re-serialised body carries the client's values unchanged."""
    try:
        return json.loads(data)
    except (ValueError, RecursionError):  # also UnicodeDecodeError; RecursionError: nested too deep
        return None


# JSON-RPC keys metering reads: a client message naming one twice is refused, since the proxy
# (last wins) and the server (maybe first wins) would disagree on what was called.
METERED_KEYS = frozenset(("jsonrpc", "id", "method", "params", "name", "requestState", "_meta", "traceparent", "tracestate"))


class BadRequest(ValueError):
    """A client's POST body the proxy cannot meter, so it is not forwarded."""


def _no_duplicates(items: list[tuple[str, Any]]) -> dict[str, Any]:
    doc = dict(items)
    if len(doc) != len(items):
        seen: set[str] = set()
        for k, _ in items:
            if k in seen and k in METERED_KEYS:
                raise BadRequest(f"a JSON-RPC message names {k!r} twice")
            seen.add(k)
    return doc


def parse_request(data: bytes) -> Any:
    """A client's POST body. Raises BadRequest when it is not JSON, is nested deeper than the
    parser goes (a server with a deeper parser would run what the proxy never metered), or
    names a key metering reads twice."""
    try:
        return json.loads(data, object_pairs_hook=_no_duplicates)
    except RecursionError:
        raise BadRequest("the JSON body is nested too deep") from None
    except BadRequest:
        raise
    except ValueError:  # also UnicodeDecodeError
        raise BadRequest("the body is not JSON") from None


def dumps(doc: Any) -> bytes:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


def messages(doc: Any) -> list[dict[str, Any]]:
    """The JSON-RPC messages of a body: one object, or a batch (2025-03-26 allowed them)."""
    if isinstance(doc, dict):
        return [doc]
    if isinstance(doc, list):
        return [m for m in doc if isinstance(m, dict)]
    return []


def is_request(m: dict[str, Any]) -> bool:
    return isinstance(m.get("method"), str) and m.get("id") is not None


def is_response(m: dict[str, Any]) -> bool:
    return "method" not in m and m.get("id") is not None and ("result" in m or "error" in m)


def id_key(m: dict[str, Any]) -> str:
    """A request id as a dict key that tells 1 and "1" apart, as JSON-RPC does, but not 1, 1.0
    and 1e0: a server that reads ids as JavaScript does (the TypeScript SDK's) echoes any of
    them as `1`, and an integer past 2^53 as the double nearest to it, so numbers are keyed
    by that double."""
    v = m.get("id")
    if isinstance(v, str):
        return "s" + v
    if isinstance(v, int | float) and not isinstance(v, bool):
        try:
            return "n" + repr(float(v) + 0.0)  # + 0.0: -0 is 0, as JavaScript writes it
        except OverflowError:  # past any double: no server could echo it as a number
            return "n" + str(v)
    return "j" + json.dumps(v, sort_keys=True)


def _params(m: dict[str, Any]) -> dict[str, Any]:
    p = m.get("params")
    return p if isinstance(p, dict) else {}


def tool_name(m: dict[str, Any]) -> str:
    name = _params(m).get("name")
    return name if m.get("method") == "tools/call" and isinstance(name, str) else ""


def request_state(m: dict[str, Any]) -> str | None:
    """The `requestState` a follow-up round of a multi-round tool call carries."""
    state = _params(m).get("requestState")
    return state if m.get("method") == "tools/call" and isinstance(state, str) and state else None


def meta_traceparent(m: dict[str, Any]) -> str | None:
    """W3C trace context where the OpenTelemetry MCP conventions put it: `params._meta`."""
    meta = _params(m).get("_meta")
    tp = meta.get("traceparent") if isinstance(meta, dict) else None
    return tp if isinstance(tp, str) else None


def meta_tracestate(m: dict[str, Any]) -> str | None:
    meta = _params(m).get("_meta")
    ts = meta.get("tracestate") if isinstance(meta, dict) else None
    return ts if isinstance(ts, str) else None


def set_meta_traceparent(m: dict[str, Any], value: str, state: str = "") -> bool:
    """Write `params._meta.traceparent` (and our `state` member first in `tracestate`); False
    when the message has non-object params."""
    params = m.setdefault("params", {})
    if not isinstance(params, dict):
        return False
    meta = params.setdefault("_meta", {})
    if not isinstance(meta, dict):
        return False
    meta["traceparent"] = value
    if state:
        incoming = meta.get("tracestate")
        meta["tracestate"] = merge(state, incoming if isinstance(incoming, str) else None)
    return True


def outcome(m: dict[str, Any]) -> tuple[str, str]:
    """(status, error text) of a JSON-RPC response; status `input_required` for a parked round."""
    if "error" in m:
        err = m["error"] if isinstance(m["error"], dict) else {}
        return "protocol_error", f"{err.get('code', '')}: {err.get('message', '')}"
    result = m.get("result")
    if isinstance(result, dict):
        if result.get("resultType") == "input_required" and isinstance(result.get("requestState"), str):
            return "input_required", ""
        if result.get("isError") is True:
            return "tool_error", ""
    return "ok", ""


def price(server: MCPServerConfig, method: str, tool: str) -> Decimal:
    """A call's price: per tool (`tool_prices`, else `price_per_call_usd`) for tools/call,
    `method_prices` for other methods, else nothing."""
    if method == "tools/call":
        return server.tool_prices.get(tool, server.price_per_call_usd or ZERO)
    return server.method_prices.get(method, ZERO)


def _set_trace(m: dict[str, Any], call: Call, meter: Meter) -> bool:
    return set_meta_traceparent(m, call.traceparent, meter.tracestate(call))


@dataclass(slots=True)
class Parked:
    call: Call
    response_bytes: int
    since: float = field(default_factory=time.perf_counter)


class Rounds:
    """Multi-round tool calls waiting for their next round, by the `requestState` they returned.

    In memory: a follow-up that reaches another replica is recorded there as a call of its own
    (still once). Calls never continued are dropped after `ttl` seconds, uncharged: the server
    did not complete them.
    """

    def __init__(self, ttl: float = 3600.0, limit: int = 100_000):
        self.ttl, self.limit = ttl, limit
        self._parked: OrderedDict[str, Parked] = OrderedDict()

    def park(self, state: str, parked: Parked) -> None:
        self._parked[state] = parked
        self._parked.move_to_end(state)
        now = time.perf_counter()
        while self._parked and (
            len(self._parked) > self.limit or now - next(iter(self._parked.values())).since > self.ttl
        ):
            self._parked.popitem(last=False)

    def resume(self, state: str, key_id: str, request_bytes: int = 0) -> Parked | None:
        """The parked call `state` continues, if this key started it, with the `request_bytes`
        of the round that continues it added."""
        parked = self._parked.get(state)
        if parked is None or parked.call.key.id != key_id:
            return None
        del self._parked[state]
        call = parked.call
        # Latency is the proxy-side time of all rounds, not the time the client spent answering.
        started = call.started + time.perf_counter() - parked.since
        return Parked(call._replace(started=started, request_bytes=call.request_bytes + request_bytes), parked.response_bytes)


@dataclass(slots=True)
class Waiting:
    call: Call
    response_bytes: int
    deadline: float


class Resumed:
    """Handshake-era calls whose POST stream ended before their response, waiting for it on a
    resumed stream (GET with `Last-Event-ID`: 2025-11-25 servers may close a call's stream and
    have the client poll), by session id and JSON-RPC id.

    A call with no answer by its deadline (the server's `read_timeout` after the last sign of
    life) is recorded as `upstream_error` at the next MCP request.
    """

    def __init__(self) -> None:
        self._waiting: dict[str, dict[str, Waiting]] = {}

    def wait(self, session: str, key: str, call: Call, response_bytes: int, timeout: float) -> None:
        self._waiting.setdefault(session, {})[key] = Waiting(call, response_bytes, time.monotonic() + timeout)

    def has(self, session: str) -> bool:
        return session in self._waiting

    def take(self, session: str, key: str) -> Waiting | None:
        """The oldest call waiting with id `key` (ids may repeat: see Exchange.add)."""
        calls = self._waiting.get(session, {})
        waiting = calls.pop(key, None)
        if waiting is None:
            slot = next((k for k in calls if k.startswith(key + DUPLICATE)), None)
            waiting = calls.pop(slot) if slot is not None else None
        if not calls:
            self._waiting.pop(session, None)
        return waiting

    def touch(self, session: str, timeout: float) -> None:
        """The server is still at work on this session's calls (it resumed a stream)."""
        for w in self._waiting.get(session, {}).values():
            w.deadline = max(w.deadline, time.monotonic() + timeout)

    def expire(self) -> Sequence[Waiting]:
        """The calls past their deadline, no longer waiting: their owner records them."""
        if not self._waiting:
            return ()
        now = time.monotonic()
        expired = []
        for session, calls in list(self._waiting.items()):
            for key, w in list(calls.items()):
                if w.deadline < now:
                    del calls[key]
                    expired.append(w)
            if not calls:
                del self._waiting[session]
        return expired



@dataclass
class Exchange:
    """The metered calls of one POST (or of a resumed GET stream), ended as their responses
    pass through.

    The owner of the calls it holds: a call is in one place at a time (open here, parked in
    `Rounds`, waiting in `Resumed`), and is recorded, by `_finish`, as it leaves for good."""

    server: MCPServerConfig
    meter: Meter
    rounds: Rounds
    resumed: Resumed | None = None
    session: str = ""  # Mcp-Session-Id of the handshake era
    http_status: int = 200
    calls: dict[str, Call] = field(default_factory=dict)  # open, by JSON-RPC id
    carried: dict[str, int] = field(default_factory=dict)  # response bytes of earlier rounds
    _later: dict[str, deque[str]] = field(default_factory=dict)  # slots of repeated ids, in order
    _serial: Iterator[int] = field(default_factory=lambda: itertools.count(2))
    response_bytes: int = 0
    resumable: bool = False  # the stream's events have ids: the client may resume it

    def add(self, m: dict[str, Any], call: Call, carried_bytes: int = 0) -> None:
        """A call awaiting its response. Ids may repeat (a batch of 50 `"id": 7`): each call
        gets a slot of its own (`7`, `7#2`, ...) and responses end them in order, so none is
        lost, and one left without a response is still recorded when the exchange closes."""
        base = key = id_key(m)
        if key in self.calls or base in self._later:
            key = f"{base}{DUPLICATE}{next(self._serial)}"
            self._later.setdefault(base, deque()).append(key)
        self.calls[key] = call
        if carried_bytes:
            self.carried[key] = carried_bytes

    def _take(self, base: str) -> tuple[str, Call | None]:
        """The slot and call the next response with id `base` ends."""
        call = self.calls.pop(base, None)
        if call is not None:
            return base, call
        later = self._later.get(base)
        while later:
            key = later.popleft()
            call = self.calls.pop(key, None)
            if call is not None:
                return key, call
        return base, None

    @property
    def open(self) -> bool:
        return bool(self.calls)

    def first(self) -> Call | None:
        """The call whose trace context server-to-client requests get while it is open."""
        for call in self.calls.values():
            return call
        return None

    def on_message(self, m: dict[str, Any]) -> bool:
        """Meter one message coming back; True if it was rewritten (trace context added).

        Requests the server makes of the client on behalf of our call (sampling, elicitation:
        sent mid-stream in the handshake era, as a result's `inputRequests` in 2026-07-28) get
        our call's span as `_meta.traceparent` when they carry none, so an LLM call the client
        makes for them with that traceparent becomes the call's child.
        """
        if is_response(m):
            key, call = self._take(id_key(m))
            if call is None and self.resumed is not None and self.session:
                waiting = self.resumed.take(self.session, key)
                if waiting is not None:
                    call, self.carried[key] = waiting.call, waiting.response_bytes
            return call is not None and self._end(call, m, key)
        if is_request(m) and meta_traceparent(m) is None:
            call = self.first()
            return call is not None and _set_trace(m, call, self.meter)
        return False

    def on_sse_event(self, event: bytes) -> bytes:
        """The event as it should leave: calls it ends are recorded first."""
        self.response_bytes += len(event)
        self.resumable = self.resumable or has_event_id(event)
        data = event_data(event)
        if not data or not (self.calls or (self.resumed is not None and self.resumed.has(self.session))):
            return event
        doc = loads(data)
        rewritten = False
        for m in messages(doc):
            rewritten = self.on_message(m) or rewritten
        return replace_event_data(event, dumps(doc)) if rewritten else event

    def on_body(self, body: bytes | None) -> bytes | None:
        """Meter a whole JSON body (None: too large to inspect, its calls count as answered);
        returns the body rewritten, or None when it leaves as it came."""
        if body is None:
            self.close("ok", "response too large to inspect")
            return None
        doc = loads(body)
        rewritten = False
        for m in messages(doc):
            rewritten = self.on_message(m) or rewritten
        return dumps(doc) if rewritten else None

    def _end(self, call: Call, m: dict[str, Any], key: str) -> bool:
        """Record the call its response ends, or park it for its next round; True if the
        response was rewritten."""
        status, error = outcome(m)
        size = self.response_bytes + self.carried.pop(key, 0)
        if status != "input_required":
            self._finish(call, status, error, size)
            return False
        self.rounds.park(m["result"]["requestState"], Parked(call, size))
        asks = m["result"].get("inputRequests")
        rewritten = False
        for ask in asks.values() if isinstance(asks, dict) else ():
            if isinstance(ask, dict) and isinstance(ask.get("method"), str) and meta_traceparent(ask) is None:
                rewritten = _set_trace(ask, call, self.meter) or rewritten
        return rewritten

    def _finish(self, call: Call, status: str, error: str, size: int) -> None:
        cost = price(self.server, call.method, call.tool) if status in CHARGED else ZERO
        self.meter.record(call, status=status, http_status=self.http_status, response_bytes=size, cost=cost, error=error)

    def ended(self) -> None:
        """The stream ended cleanly: calls still open wait for a resumed stream if the client
        can resume this one, else they broke off."""
        timeout = self.server.read_timeout
        if not (self.resumable and self.session and self.resumed is not None):
            self.close("upstream_error", "stream ended without a response")
            return
        self.resumed.touch(self.session, timeout)
        for key, call in list(self.calls.items()):
            del self.calls[key]
            self.resumed.wait(self.session, key, call, self.response_bytes + self.carried.pop(key, 0), timeout)

    def close(self, status: str, error: str = "", http_status: int | None = None) -> None:
        """End every call still open (no response came) with `status`."""
        if http_status is not None:
            self.http_status = http_status
        for key, call in list(self.calls.items()):
            del self.calls[key]
            self._finish(call, status, error, self.response_bytes + self.carried.pop(key, 0))
