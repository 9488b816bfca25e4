"""What the proxy adds to the responses it relays: the call's id and cost headers, and an
error that ends a stream in a form OpenAI's SDKs raise.

Shared by the OpenAI-compatible relay (llm.py), the litellm one (litellm_provider.py) and the
MCP route (mcp.py).
"""

from __future__ import annotations

from decimal import Decimal

import orjson
from starlette.responses import Response

from meterline.costing.money import usd

from .errors import ProxyError
from .sse import data_event

CALL_ID = "x-meterline-call-id"
COST = "x-meterline-cost-usd"


def meter_headers(call_id: str, cost: Decimal | None) -> dict[str, str]:
    """The headers a non-streamed response gets: its call id, and its cost when priced."""
    headers = {CALL_ID: call_id}
    if cost is not None:
        headers[COST] = usd(cost, 12).rstrip("0").rstrip(".") if cost else "0"
    return headers


class RelayedResponse(Response):
    """A whole response whose headers are already the raw pairs ASGI sends (the relay's):
    Starlette's Response, without encoding each header again and searching the list for
    `content-length`."""

    def __init__(self, body: bytes, status_code: int, headers: list[tuple[bytes, bytes]]):
        self.body, self.status_code, self.background = body, status_code, None
        if status_code >= 200 and status_code not in (204, 304):  # as Starlette's: no body otherwise
            headers.append((b"content-length", b"%d" % len(body)))
        self.raw_headers = headers


def raw_headers(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    """Our own headers (ids, costs, limits: ASCII) as raw pairs."""
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]


def error_event(err: ProxyError, path: str) -> bytes:
    """An SSE event that makes OpenAI's SDKs raise `err` mid-stream."""
    if path == "/responses":  # the Responses API's own `error` event
        body = {"type": "error", "code": err.code, "message": str(err), "param": None}
        return data_event(orjson.dumps(body), "error")
    return data_event(orjson.dumps({"error": {"message": str(err), "type": err.type, "code": err.code, "param": None}}))
