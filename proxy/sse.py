"""Server-sent events as they cross the proxy: split, read and rewritten byte-exactly.

One framing for both relays: the LLM routes read usage out of an upstream's events, the MCP
route reads JSON-RPC responses out of them (and rewrites the trace context of a few). Both
pass every other byte on as it came, so splitting keeps each event's bytes, field order and
line endings (LF, CRLF or CR, as the spec allows) untouched.
"""

from __future__ import annotations

import re

_BOUNDARY = re.compile(rb"\r\n\r\n|\n\n|\r\r")
_LINE = re.compile(rb"\r\n|\r|\n")
_EVENT_ID = re.compile(rb"(?:^|[\r\n])id:")


class SSEEvents:
    """Splits a byte stream into whole SSE events, keeping their bytes exactly as sent."""

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        buf = self._buf + chunk
        events = []
        start = 0
        for m in _BOUNDARY.finditer(buf):
            events.append(buf[start : m.end()])
            start = m.end()
        self._buf = buf[start:]
        return events

    def rest(self) -> bytes:
        rest, self._buf = self._buf, b""
        return rest


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
