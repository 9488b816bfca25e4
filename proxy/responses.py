"""What the proxy adds to the responses it relays: the call's id and cost headers, and an
error that ends a stream in a form OpenAI's SDKs raise.

Shared by the OpenAI-compatible relay (llm.py), the litellm one (litellm_provider.py) and the
MCP route (mcp.py).
"""

from __future__ import annotations

from decimal import Decimal

import orjson

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


def error_event(err: ProxyError, path: str) -> bytes:
    """An SSE event that makes OpenAI's SDKs raise `err` mid-stream."""
    if path == "/responses":  # the Responses API's own `error` event
        body = {"type": "error", "code": err.code, "message": str(err), "param": None}
        return data_event(orjson.dumps(body), "error")
    return data_event(orjson.dumps({"error": {"message": str(err), "type": err.type, "code": err.code, "param": None}}))
