"""Admin: the chargeback as JSON, and flushing the spool to the ledger."""

from __future__ import annotations

import asyncio

import orjson
from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from meterline.costing.chargeback import load_chargeback

from ..auth import check_admin
from ..runtime import Runtime
from .models import Month

router = APIRouter()


@router.post("/ledger/flush")
async def flush_ledger(request: Request) -> Response:
    """Write everything spooled so far to the database now (the writer does it every 200 ms)."""
    rt: Runtime = request.app.state.runtime
    check_admin(rt, request)
    written = await rt.flush_ledger()
    return JSONResponse({"written": written})


@router.get("/reports/chargeback")
async def chargeback_report(request: Request, month: Month) -> Response:
    """The month's chargeback as JSON: the same lines and totals as `meterline export chargeback`
    (a closed month from its snapshot)."""
    rt: Runtime = request.app.state.runtime
    check_admin(rt, request, finance=True)
    cb = await asyncio.to_thread(load_chargeback, rt.engine, rt.settings, month)
    return Response(orjson.dumps(cb.as_dict()), media_type="application/json")
