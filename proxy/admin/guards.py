"""Admin: the guards' state. Rate limits' current use (`GET /admin/limits`) and open spend
anomalies (`GET /admin/anomalies`); admin or finance key."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.responses import JSONResponse, Response

from meterline.reports.guards import recent_anomalies

from ..auth import check_admin
from ..runtime import Runtime
from .models import AnomaliesOut, LimitsOut

router = APIRouter(tags=["guards"])


@router.get("/limits", response_model=LimitsOut)
async def limits_route(request: Request) -> Response:
    """Every rate limit this replica counts (`limits:` and keys' own that have had a call here)
    with the sliding window's current use: the fleet's as of this replica's last lease renewal,
    its own calls up to now."""
    rt: Runtime = request.app.state.runtime
    check_admin(rt, request, finance=True)
    out = []
    for u in rt.rate_limits.uses():
        kind, _, name = u.scope.partition(":")
        limit = Decimal(u.limit)
        out.append(
            {
                "scope": kind,
                "id": name,
                "metric": u.metric,
                "limit": str(u.limit),
                "used": f"{u.used:f}",
                "remaining": f"{u.remaining:f}",
                "used_percent": f"{(u.used * 100 / limit).quantize(Decimal('0.1')) if limit else Decimal(0):f}",
                "reset_seconds": round(u.reset_seconds, 3),
                "lease": None if u.lease is None else f"{u.lease:f}",
            }
        )
    return JSONResponse({"limits": out})


@router.get("/anomalies", response_model=AnomaliesOut)
async def anomalies_route(
    request: Request, hours: Annotated[int, Query(ge=1, le=24 * 62, description="spikes that started in the last this many hours")] = 24
) -> Response:
    """Spend anomalies from the ledger: each team's or key's spike that started in the last
    `hours`, newest first; `open` while it goes on (the current or the last full hour)."""
    rt: Runtime = request.app.state.runtime
    check_admin(rt, request, finance=True)
    rows = await asyncio.to_thread(recent_anomalies, rt.engine, rt.settings.alerts, rt.meter.clock(), hours)
    return JSONResponse({"hours": hours, "anomalies": rows})
