"""A raw-socket upstream that answers whatever bytes a test hands it: broken HTTP, broken SSE,
broken JSON, and hostile answers (redirects, forged headers, endless or huge streams). A request
names its answer with `junk:<id>` anywhere in its body; `received` keeps every request's head."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

from tests.conftest import free_port

_ID = re.compile(rb"junk:(\w+)")


class JunkUpstream:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.answers: dict[str, bytes | Callable[[], AsyncIterator[bytes]]] = {}
        self.received: list[bytes] = []  # the head of every request, in order
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> JunkUpstream:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(timeout=10)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def answer(self, name: str, raw: bytes | Callable[[], AsyncIterator[bytes]]) -> str:
        """Register `raw` as the whole answer (status line and all), or a function giving an
        async iterator of its pieces (a stream made as it is sent); returns the body marker."""
        self.answers[name] = raw
        return f"junk:{name}"

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            m = re.search(rb"content-length:\s*(\d+)", head, re.I)
            body = await reader.readexactly(int(m.group(1))) if m else b""
            self.received.append(head)
            found = _ID.search(body)
            raw = self.answers.get(found.group(1).decode(), b"") if found else b""
            if callable(raw):
                async for piece in raw():
                    writer.write(piece)
                    await writer.drain()
            else:
                for i in range(0, len(raw), 4096):  # in pieces, so events straddle reads
                    writer.write(raw[i : i + 4096])
                    await writer.drain()
            # All of it out before the abort below, which drops what the transport still holds:
            # drain() waits only down to the high-water mark, and on a busy host the last of a
            # long stream was lost, ending it mid-event.
            writer.transport.set_write_buffer_limits(0)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.transport.abort()


SSE_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n"


def sse_response(body: bytes, *, chunked: bool = False) -> bytes:
    """An HTTP/1.1 200 text/event-stream answer around `body`, closed after it."""
    head = SSE_HEAD
    if chunked:
        return head + b"transfer-encoding: chunked\r\n\r\n" + b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n"
    return head + b"\r\n" + body


def json_response(body: bytes, *, status: int = 200, length: int | None = None, headers: bytes = b"") -> bytes:
    n = len(body) if length is None else length
    return (
        b"HTTP/1.1 %d X\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n" % (status, n)
        + headers
        + b"\r\n"
        + body
    )


WORDS = "hello world "


def delta(text: str) -> bytes:
    return b'data: {"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"' + text.encode() + b'"}}]}\n\n'


def usageless_stream(total: int, *, pause: float = 0.0, end: bool = True) -> Callable[[], AsyncIterator[bytes]]:
    """A hostile answer: about `total` bytes of text deltas and no usage, made as it is sent,
    at full speed or one event every `pause` seconds; without [DONE] unless `end`."""

    async def gen() -> AsyncIterator[bytes]:
        yield SSE_HEAD + b"\r\n"
        event = delta(WORDS * 300)
        for _ in range(total // len(event)):
            yield event
            if pause:
                await asyncio.sleep(pause)
        if end:
            yield b"data: [DONE]\n\n"

    return gen
