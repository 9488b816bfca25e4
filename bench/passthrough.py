"""Target (d): the bare pass-through the issue compares against.

Starlette on uvicorn (uvloop, httptools) forwarding every POST to the mock with one shared
aiohttp ClientSession, bytes in and bytes out, no metering. Meterline should reach >= 70% of it.

    python bench/passthrough.py --port 8802 --upstream http://127.0.0.1:8801
"""

from __future__ import annotations

import argparse

import aiohttp
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

KEEP = ("content-type", "authorization")


def create_app(upstream: str) -> Starlette:
    session: dict[str, aiohttp.ClientSession] = {}

    async def forward(request: Request) -> Response:
        headers = {h: request.headers[h] for h in KEEP if h in request.headers}
        resp = await session["s"].post(upstream + request.url.path, data=await request.body(), headers=headers)
        ctype = resp.headers.get("content-type", "")
        if ctype.startswith("text/event-stream"):
            async def relay():
                try:
                    async for chunk in resp.content.iter_any():
                        yield chunk
                finally:
                    resp.release()
            return StreamingResponse(relay(), resp.status, media_type=ctype)
        body = await resp.read()
        resp.release()
        return Response(body, resp.status, media_type=ctype)

    async def lifespan(app: Starlette):
        session["s"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), auto_decompress=False)
        yield
        await session["s"].close()

    return Starlette(routes=[Route("/v1/{path:path}", forward, methods=["POST"])], lifespan=lifespan)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--upstream", required=True, help="mock base URL, without /v1")
    a = ap.parse_args()
    uvicorn.run(create_app(a.upstream), host="127.0.0.1", port=a.port, log_level="warning",
                access_log=False, loop="uvloop", http="httptools")
