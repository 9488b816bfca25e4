"""How `meterline serve` runs uvicorn: the HTTP-level caps of docs/security.md.

uvicorn's fast parser (httptools) has no limit on a request's headers (five 100 MB headers
once held 800 MB and stalled the loop for 7 s), and no connection is timed out before its
first request. `GuardedHttpTools` adds both: a request line and headers over
`server.max_header_bytes` get 431 and the connection closed, and a client that has not sent
them whole within `server.header_timeout_seconds` of connecting (or of starting its next
request) is disconnected. Without httptools, uvicorn's h11 takes the size limit
(`h11_max_incomplete_event_size`), not the timeout. Its connections also write once per turn
of the event loop (`OneWritePerTurn`): a response's head and body in one `send(2)`.
"""

from __future__ import annotations

import asyncio
import functools
import re
from typing import Any

from meterline.costing.config import ServerConfig

TOO_LARGE = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


class OneWritePerTurn:
    """A transport whose writes made in one turn of the event loop leave as one `send(2)`.

    uvicorn writes a response's head as soon as the app starts it and its body when it comes,
    so every answer cost two system calls and two packets; an app that sends both without
    waiting (every non-streamed answer) now costs one. A write is held until the loop's next
    turn at most, so a stream's events leave as promptly as before.
    """

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop):
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] | None = None

    def write(self, data: bytes) -> None:
        if self._pending is None:
            self._pending = [data]
            self._loop.call_soon(self._flush)
        else:
            self._pending.append(data)

    def _flush(self) -> None:
        pending, self._pending = self._pending, None
        if pending and not self._transport.is_closing():
            self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._pending or ()))

    def __getattr__(self, name: str) -> Any:  # the rest of the transport, as it is
        return getattr(self._transport, name)


def uvicorn_options(server: ServerConfig) -> dict[str, Any]:
    """The `uvicorn.run` / `uvicorn.Config` options that apply the caps."""
    options: dict[str, Any] = {
        "timeout_keep_alive": server.keep_alive_seconds,
        "h11_max_incomplete_event_size": server.max_header_bytes,
        "limit_concurrency": server.max_connections,
    }
    try:
        options["http"] = guarded_httptools(server.max_header_bytes, server.header_timeout_seconds)
    except ImportError:
        options["http"] = "h11"
    return options


@functools.cache
def guarded_httptools(max_head: int, head_timeout: float) -> type[asyncio.Protocol]:
    """The protocol class for these caps, named after them in this module: `--workers` hands
    uvicorn's config to new processes by pickling, which finds a class by its module and name
    (see `__getattr__`)."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class GuardedHttpTools(HttpToolsProtocol):
        _reading_head = True
        _head = 0
        _tail = b""
        _timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(OneWritePerTurn(transport, asyncio.get_running_loop()))  # type: ignore[arg-type]
            self._start_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            self._stop_timer()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._reading_head:
                seen = self._head
                self._head += len(data)
                # The packet that ends the head may carry body bytes too: only a head still
                # open past the limit is refused.
                if self._head > max_head and b"\r\n\r\n" not in (self._tail + data)[: max_head - seen + len(self._tail)]:
                    self._refuse()
                    return
                self._tail = data[-3:]
            super().data_received(data)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if not self._reading_head:  # the next request on a kept-alive connection
                self._reading_head, self._head, self._tail = True, 0, b""
                self._start_timer()

        def on_headers_complete(self) -> None:
            self._reading_head = False
            self._stop_timer()
            super().on_headers_complete()

        def _start_timer(self) -> None:
            self._stop_timer()
            self._timer = self.loop.call_later(head_timeout, self._too_slow)

        def _stop_timer(self) -> None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

        def _too_slow(self) -> None:
            self._timer = None
            if self._reading_head and not self.transport.is_closing():
                self.transport.close()

        def _refuse(self) -> None:
            self._stop_timer()
            if not self.transport.is_closing():
                self.transport.write(TOO_LARGE)
                self.transport.close()

    GuardedHttpTools.__name__ = GuardedHttpTools.__qualname__ = f"GuardedHttpTools_{max_head}_{round(head_timeout * 1000)}"
    return GuardedHttpTools


def __getattr__(name: str) -> type[asyncio.Protocol]:
    """The guarded protocol class a pickle names, made again in a new worker process."""
    m = re.fullmatch(r"GuardedHttpTools_(\d+)_(\d+)", name)
    if m is None:
        raise AttributeError(name)
    return guarded_httptools(int(m[1]), int(m[2]) / 1000)
