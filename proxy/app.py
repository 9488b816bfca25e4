"""The FastAPI application: built by `create_app(settings)`, nothing happens at import."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import httpx
from fastapi import FastAPI, Request
from fastapi.routing import APIRoute
from starlette.responses import JSONResponse, Response

from meterline.costing.config import Settings

from . import admin, key_usage, llm, mcp, metrics
from .errors import HANDLED, respond
from .fastpath import MeterlineApp
from .runtime import Runtime
from .upstream import VERSION


def create_app(
    settings: Settings,
    *,
    upstream_client: aiohttp.ClientSession | None = None,
    mcp_transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    """Parameters:
    settings: the loaded config; the app opens the ledger and spool when it starts.
    upstream_client: what LLM calls reach their OpenAI-compatible providers through: an aiohttp
        session, or a stand-in with its `post` (tests). Its giver closes it. Default: the
        proxy's own pooled session.
    mcp_transport: the httpx transport MCP requests go through, e.g. `httpx.MockTransport`
        (tests). Default: the network.

    The app's `state.runtime` (a `Runtime`) is there once its lifespan has started.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = await Runtime.start(settings, upstream_client=upstream_client, mcp_transport=mcp_transport)
        app.state.runtime = runtime
        if isinstance(app, MeterlineApp):
            app.ack_timeout = runtime.ack_timeout
        try:
            yield
        finally:
            await runtime.stop()

    app = MeterlineApp(title="Meterline", version=VERSION, lifespan=lifespan)
    # The metered routes, served ahead of the middleware stack (see fastpath.py).
    app.fast_routes = {r.path: r.endpoint for r in llm.router.routes if isinstance(r, APIRoute) and "POST" in (r.methods or ())}
    app.include_router(llm.router)
    app.include_router(mcp.router)
    app.include_router(admin.router)
    app.include_router(key_usage.router)
    app.include_router(metrics.router)

    @app.get("/healthz")
    async def healthz(request: Request) -> Response:
        """`{"status": "ok"}` when all is well. Otherwise what is wrong, with `spool` (`disk` or
        `jetstream`): `degraded` (200) while the ledger database is away and calls go on being
        spooled (seen by the writer, or by the key refresh when there is nothing to write);
        `unavailable` (503, with `reason`) while calls are refused because the event
        broker is unreachable or the spool's disk refuses writes (docs/durability.md)."""
        rt: Runtime = request.app.state.runtime
        writer = rt.writer
        spool = rt.spool_state()
        if spool != "ok":
            body = {"status": "unavailable", "reason": spool, "spool": rt.spool_kind}
            if rt.spool_kind == "jetstream":
                body["broker"] = spool
            return JSONResponse(body, status_code=503)
        if writer.degraded or rt.ledger_error:
            said = writer.last_error if writer.degraded else rt.ledger_error
            return JSONResponse({"status": "degraded", "ledger": said, "spool": rt.spool_kind})
        if writer.stalled:
            return JSONResponse({"status": "degraded", "ledger": "the database is not answering", "spool": rt.spool_kind})
        return JSONResponse({"status": "ok"})

    for handled in HANDLED:  # one mapping for every route (errors.py); the fast path uses it too
        app.add_exception_handler(handled, respond)

    return app
