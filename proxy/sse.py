"""Server-sent events as they cross the proxy: split, read and rewritten byte-exactly.

One framing for both relays: the LLM routes read usage out of an upstream's events, the MCP
route reads JSON-RPC responses out of them (and rewrites the trace context of a few). Both
pass every other byte on as it came, so splitting keeps each event's bytes, field order and
line endings (LF, CRLF or CR, as the spec allows) untouched.
"""

from __future__ import annotations

import re

_LINE = re.compile(rb"\r\n|\r|\n")
_EVENT_ID = re.compile(rb"(?:^|[\r\n])id:")


MAX_EVENT_BYTES = 4 * 1024 * 1024  # `server.max_sse_event_bytes`


class SSEEvents:
    """Splits a byte stream into whole SSE events, keeping their bytes exactly as sent.

    Each byte is scanned once (a read only looks for a boundary from where the last one
    stopped, less the 3 bytes a boundary could straddle): an upstream sending 40 MB without
    a blank line used to cost a rescan of everything held on every read. Nor does it hold
    more than `max_event` bytes of an event: past that, what it has is handed on as a piece
    of its own (passed through, but no longer one event, so not read for usage), and the
    rest of that event follows the same way.
    """

    def __init__(self, max_event: int = MAX_EVENT_BYTES) -> None:
        self._buf = bytearray()
        self._scanned = 0  # no boundary starts before this offset of _buf, but in the last 3 bytes
        self._max = max_event
        self._cr = False  # a CR was seen: the stream may end events with CRLF or CR

    def feed(self, chunk: bytes) -> list[bytes]:
        events: list[bytes] = []
        buf = self._buf
        if buf:
            buf += chunk
            data: bytes | bytearray = buf
            pos = max(0, self._scanned - 3)
        else:  # the usual case, a read of whole events: no copy into the buffer
            data, pos = chunk, 0
        # LF-only streams (most) are cut with bytes.find, several times faster than the regex.
        self._cr = self._cr or b"\r" in chunk
        lf_only = not self._cr
        start = 0
        found = [-2, -2, -2]  # -2: not searched yet
        end = _boundary(data, pos, lf_only, found)
        while end >= 0:
            events.append(bytes(data[start:end]))
            start = end
            end = _boundary(data, start, lf_only, found)
        if data is buf:
            del buf[:start]
            self._scanned = len(buf)
        elif start < len(chunk):
            self._take(chunk[start:])
        if len(self._buf) > self._max:
            events.append(bytes(self._buf))
            self._buf.clear()
            self._scanned = 0
        return events

    def _take(self, rest: bytes) -> None:
        self._buf += rest
        self._scanned = len(self._buf)

    def rest(self) -> bytes:
        rest = bytes(self._buf)
        self._buf.clear()
        self._scanned = 0
        return rest


# The blank lines that end an event, as the relay has always cut them.
_ENDINGS = (b"\r\n\r\n", b"\n\n", b"\r\r")


def _boundary(data: bytes | bytearray, start: int, lf_only: bool, found: list[int]) -> int:
    """The end of the first event boundary at or after `start`, or -1. `found` keeps where
    each ending was last found in `data` (-1: nowhere after), so each is searched for once
    per occurrence, not once per event: linear, and several times faster than a regex."""
    if lf_only:
        i = data.find(b"\n\n", start)
        return i + 2 if i >= 0 else -1
    best = end = -1
    for k, ending in enumerate(_ENDINGS):
        i = found[k]
        if i != -1 and i < start:
            i = found[k] = data.find(ending, start)
        if i >= 0 and (best < 0 or i < best):
            best, end = i, i + len(ending)
    return end


def event_data(event: bytes) -> bytes:
    """The joined `data:` field of one SSE event."""
    lines = event.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    data = [ln[5:].removeprefix(b" ") for ln in lines if ln.startswith(b"data:")]
    return b"\n".join(data)


def has_event_id(event: bytes) -> bool:
    """The event has an `id:` field (a stream whose events have ids can be resumed)."""
    return _EVENT_ID.search(event) is not None


def replace_event_data(event: bytes, data: bytes) -> bytes:
    """The SSE event with its `data:` lines replaced by one line of `data`; other fields, the
    line endings (LF or CRLF) and their order are kept."""
    m = _LINE.search(event)
    eol = m.group(0) if m else b"\n"
    out: list[bytes] = []
    placed = False
    for line in _LINE.split(event):
        if not line:
            continue
        if line.startswith(b"data:"):
            if not placed:
                out.append(b"data: " + data)
                placed = True
            continue
        out.append(line)
    return eol.join(out) + eol + eol


def data_event(data: bytes, name: str = "") -> bytes:
    """One event carrying `data` (a single line), named `name` when given."""
    head = b"event: " + name.encode() + b"\n" if name else b""
    return head + b"data: " + data + b"\n\n"
