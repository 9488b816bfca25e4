"""OpenAI-shaped errors: the one place costing errors become HTTP answers."""

from __future__ import annotations

import orjson
from starlette.responses import Response

from meterline.costing.errors import (
    BudgetExceeded,
    CostingError,
    InvalidKey,
    KeyRequestError,
    PeriodClosed,
    PeriodNotEnded,
    UnknownKey,
)


class ProxyError(Exception):
    def __init__(self, status: int, code: str, message: str, *, type: str | None = None, param: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.type = type or ("invalid_request_error" if status < 500 else "api_error")
        self.param = param
        self.headers: dict[str, str] = {}  # added to the error response


def invalid_request(message: str, param: str | None = None) -> ProxyError:
    return ProxyError(400, "invalid_request", message, param=param)


def from_costing(e: CostingError) -> ProxyError:
    if isinstance(e, InvalidKey):
        return ProxyError(401, "invalid_api_key", str(e), type="invalid_request_error")
    if isinstance(e, BudgetExceeded):
        return ProxyError(429, "budget_exceeded", str(e), type="insufficient_quota")
    if isinstance(e, UnknownKey):
        return ProxyError(404, "key_not_found", str(e), param="id")
    if isinstance(e, KeyRequestError):
        return ProxyError(400, "invalid_request", str(e), param=e.param)
    if isinstance(e, PeriodClosed):
        return ProxyError(409, "period_closed", str(e))
    if isinstance(e, PeriodNotEnded):
        return ProxyError(409, "period_not_ended", str(e), param="period")
    return ProxyError(500, "internal_error", str(e))


def error_response(e: ProxyError, headers: dict[str, str] | None = None) -> Response:
    body = {"error": {"message": str(e), "type": e.type, "code": e.code, "param": e.param}}
    return Response(orjson.dumps(body), status_code=e.status, media_type="application/json", headers=e.headers | (headers or {}))
