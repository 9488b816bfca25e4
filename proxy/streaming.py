"""A streaming response that notices when the client leaves.

Starlette's StreamingResponse (ASGI spec 2.4) only learns of a disconnect on its next write
and leaves closing the body iterator to the garbage collector. A metering proxy must stop
reading from the upstream as soon as the client is gone and record the call right then, so
this one listens for `http.disconnect` and always closes its iterator.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

import anyio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send


class RelayResponse(Response):
    def __init__(self, body: AsyncGenerator[bytes, None], status_code: int, headers: list[tuple[bytes, bytes]]):
        """`headers`: raw, as ASGI sends them (llm.py's `_headers`)."""
        self.body_iterator = body
        self.status_code = status_code
        self.background = None
        self.raw_headers = headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def stream() -> None:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            async for chunk in self.body_iterator:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})

        try:
            async with anyio.create_task_group() as tg:

                async def run_stream() -> None:
                    try:
                        await stream()
                    except OSError:  # the client went away mid-write
                        pass
                    tg.cancel_scope.cancel()

                tg.start_soon(run_stream)
                while (await receive())["type"] != "http.disconnect":
                    pass
                tg.cancel_scope.cancel()
        finally:
            # Runs the generator's cleanup now (records the call, closes the upstream).
            with anyio.CancelScope(shield=True):
                await self.body_iterator.aclose()
