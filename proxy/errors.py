"""OpenAI-shaped errors: the one mapping from an exception to the answer a client gets.

`respond` is the exception handler of every route: the app registers it for each type in
`HANDLED`, and the fast path (fastpath.py) calls it for the same types. What it knows:

    ProxyError                 as raised (status, code, type, param, headers)
    CostingError               `from_costing`: 401 invalid key, 429 budget or rate limit, 404 unknown key, ...
    SQLAlchemyError            503 `ledger_unavailable` (only admin routes query on a request)
    RequestValidationError     400 `invalid_request`, naming the first field at fault
    HTTPException              its status: `not_found`, `method_not_allowed`, `invalid_request`

Anything else is a bug and reaches the server's own 500 handler.
"""

from __future__ import annotations

import logging

import orjson
import sqlalchemy as sa
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from meterline.costing.errors import (
    BudgetExceeded,
    CostingError,
    CreditsExhausted,
    InvalidKey,
    KeyRequestError,
    PeriodClosed,
    PeriodNotEnded,
    RateLimited,
    RunCapExceeded,
    UnknownKey,
)

log = logging.getLogger("meterline.proxy")


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
    if isinstance(e, CreditsExhausted):
        return ProxyError(429, "credits_exhausted", str(e), type="insufficient_quota")
    if isinstance(e, RunCapExceeded):
        err = ProxyError(429, "run_budget_exceeded", str(e), type="insufficient_quota")
        err.headers["x-should-retry"] = "false"  # the OpenAI SDKs' own retry would only be refused again
        return err
    if isinstance(e, RateLimited):
        err = ProxyError(429, "rate_limit_exceeded", str(e), type=e.kind)
        err.headers.update(e.headers)
        return err
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


HANDLED: tuple[type[Exception], ...] = (ProxyError, CostingError, sa.exc.SQLAlchemyError, RequestValidationError, HTTPException)


def to_proxy_error(e: Exception) -> ProxyError:
    """The error the client gets for `e`, one of the `HANDLED` types."""
    if isinstance(e, ProxyError):
        return e
    if isinstance(e, CostingError):
        return from_costing(e)
    if isinstance(e, sa.exc.SQLAlchemyError):
        return ProxyError(503, "ledger_unavailable", "the ledger database is unavailable; try again later")
    if isinstance(e, RequestValidationError):
        first = e.errors()[0] if e.errors() else {}
        param = ".".join(str(x) for x in first.get("loc", ())[1:]) or None
        return ProxyError(400, "invalid_request", first.get("msg", "invalid request"), param=param)
    if isinstance(e, HTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(e.status_code, "invalid_request")
        return ProxyError(e.status_code, code, str(e.detail))
    raise TypeError(f"no error response for {type(e).__name__}") from e


async def respond(request: Request, e: Exception) -> Response:
    """The exception handler of every route, the fast path's included."""
    if isinstance(e, sa.exc.SQLAlchemyError):
        log.warning("ledger unavailable for %s: %s", request.url.path, str(e).splitlines()[0][:200])
    return error_response(to_proxy_error(e))
