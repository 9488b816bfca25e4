"""The FastAPI application: built by `create_app(settings)`, nothing happens at import."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response

from meterline.costing.config import Settings
from meterline.costing.errors import CostingError

from . import admin, key_usage, llm, mcp, metrics
from .errors import ProxyError, error_response, from_costing
from .fastpath import MeterlineApp
from .runtime import Runtime

log = logging.getLogger("meterline.proxy")


def create_app(settings: Settings) -> FastAPI:
    """Parameters:
    settings: the loaded config; the app opens the ledger and spool when it starts.
    """
    runtime = Runtime(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = MeterlineApp(title="Meterline", version="0.1.0", lifespan=lifespan)
    app.state.runtime = runtime
    # The metered routes, served ahead of the middleware stack (see fastpath.py).
    app.fast_routes = {r.path: r.endpoint for r in llm.router.routes if "POST" in getattr(r, "methods", ())}
    app.include_router(llm.router)
    app.include_router(mcp.router)
    app.include_router(admin.router)
    app.include_router(key_usage.router)
    app.include_router(metrics.router)

    @app.get("/healthz")
    async def healthz() -> Response:
        writer = runtime.writer
        if writer is not None and writer.degraded:
            return JSONResponse({"status": "degraded", "ledger": writer.last_error})
        if writer is not None and writer.stalled:
            return JSONResponse({"status": "degraded", "ledger": "the database is not answering"})
        return JSONResponse({"status": "ok"})

    @app.exception_handler(ProxyError)
    async def _proxy_error(request: Request, e: ProxyError) -> Response:
        return error_response(e)

    @app.exception_handler(sa.exc.SQLAlchemyError)
    async def _ledger_error(request: Request, e: sa.exc.SQLAlchemyError) -> Response:
        # Only admin routes touch the database on a request; metering goes through the spool.
        log.warning("ledger unavailable for %s: %s", request.url.path, str(e).splitlines()[0][:200])
        return error_response(ProxyError(503, "ledger_unavailable", "the ledger database is unavailable; try again later"))

    @app.exception_handler(CostingError)
    async def _costing_error(request: Request, e: CostingError) -> Response:
        return error_response(from_costing(e))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, e: RequestValidationError) -> Response:
        first = e.errors()[0] if e.errors() else {}
        param = ".".join(str(x) for x in first.get("loc", ())[1:]) or None
        return error_response(ProxyError(400, "invalid_request", first.get("msg", "invalid request"), param=param))

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, e: HTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(e.status_code, "invalid_request")
        return error_response(ProxyError(e.status_code, code, str(e.detail)))

    return app
