"""The admin API, behind `Authorization: Bearer $METERLINE_ADMIN_KEY`."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from .runtime import Runtime, check_admin

router = APIRouter(prefix="/admin")


@router.post("/ledger/flush")
async def flush_ledger(request: Request) -> Response:
    """Write everything spooled so far to the database now (the writer does it every 200 ms)."""
    rt: Runtime = request.app.state.runtime
    check_admin(rt, request)
    assert rt.writer is not None
    written = await asyncio.to_thread(rt.writer.flush)
    return JSONResponse({"written": written})
