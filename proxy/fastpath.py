"""The metered routes, dispatched ahead of FastAPI's middleware stack.

Each proxied call used to pass five middlewares (server errors, telemetry, body limit,
exceptions, exit stack), the router's matching and FastAPI's request handler before it
reached `llm.forward`: about a quarter of the worker's CPU per call, more than the metering
itself (bench/RESULTS.md). `MeterlineApp` sends POSTs to those paths straight to their
endpoint, the same function FastAPI registers (so /openapi.json still lists it), and maps
errors to responses with the app's own exception handler (errors.respond). Everything else
takes the usual way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from .durability import durable_send, start_request
from .errors import HANDLED, respond

Endpoint = Callable[[Request], Awaitable[Response]]


class MeterlineApp(FastAPI):
    """FastAPI with `fast_routes` (path -> endpoint, POST only) served before the middleware."""

    fast_routes: dict[str, Endpoint]

    # Seconds a response waits for its events' acknowledgement; None: the spool needs no wait
    # (the disk spool's append is durable on return). Set by the app's lifespan.
    ack_timeout: float | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.ack_timeout is not None and scope["type"] == "http":
            send = durable_send(send, start_request(), self.ack_timeout)  # see durability.py
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            endpoint = self.fast_routes.get(scope["path"])
            if endpoint is not None:
                scope["app"] = self  # what Request.app reads
                request = Request(scope, receive, send)
                try:
                    response = await endpoint(request)
                except HANDLED as e:
                    response = await respond(request, e)
                await response(scope, receive, send)
                return
        await super().__call__(scope, receive, send)
