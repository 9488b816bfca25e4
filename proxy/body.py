"""Reading a request: its body within `server.max_body_bytes`, its headers as a plain dict."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.requests import ClientDisconnect, Request

from .errors import ProxyError


async def read_json_body(request: Request, limit: int, headers: Mapping[str, str] | None = None) -> bytes:
    """The request body, refused with 413 as soon as it passes `limit` bytes. `headers`: the
    request's, when the caller has them as a dict already (`header_map`).

    Read from the ASGI messages themselves: Starlette's `Request.stream()` is an async
    generator around the same loop, a few µs more on every call for nothing it adds here."""
    declared = (headers if headers is not None else request.headers).get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ProxyError(413, "request_too_large", f"request body is over the {limit}-byte limit")
    chunks = []
    size = 0
    receive = request.receive
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise ProxyError(413, "request_too_large", f"request body is over the {limit}-byte limit")
        if chunk:
            chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def header_map(request: Request) -> dict[str, str]:
    """The request's headers by (lower-case) name, a repeated one at its first value as
    Starlette's `Headers` gives it. A metered call reads a dozen headers, most of them absent,
    and each miss on `Headers` is a scan of the list and a KeyError caught (with the body read
    above, about 20 µs a call: bench/in_process.py)."""
    pairs = request.scope["headers"]  # a list from uvicorn; ASGI allows any iterable
    if not isinstance(pairs, list):
        pairs = list(pairs)
    # Built from the last pair to the first, so that the first of a repeated name stays.
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in reversed(pairs)}
