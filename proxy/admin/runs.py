"""Admin: agent runs, costliest first, and one run with its call tree (admin or finance key).

The same functions as `meterline report runs` and the dashboard's Agents page
(reports/agents.py), so the three show the same numbers.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import orjson
from fastapi import APIRouter, Path, Query, Request
from starlette.responses import Response

from meterline.costing.months import MONTH_PATTERN
from meterline.reports.agents import run_detail, top_runs
from meterline.reports.capped_runs import capped_runs

from ..auth import check_admin
from ..errors import ProxyError
from ..runtime import Runtime
from .models import Month
from .run_models import CappedRunList, RunList, RunOut

router = APIRouter(tags=["runs"])

TraceId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$", description="the run's trace id (32 hex)")]


@router.get("/runs", response_model=RunList)
async def runs_route(
    request: Request,
    month: Month,
    top: Annotated[int, Query(ge=1, le=1000, description="how many runs")] = 20,
) -> Response:
    """The month's costliest agent runs (traces of more than one call), without their trees:
    the same as `meterline report runs --json`."""
    rt: Runtime = request.app.state.runtime
    check_admin(rt, request, finance=True)
    runs = await asyncio.to_thread(top_runs, rt.engine, month, top)
    body = {"month": month, "runs": [r.as_dict(tree=False) for r in runs]}
    return Response(orjson.dumps(body), media_type="application/json")


@router.get("/runs/capped", response_model=CappedRunList)
async def capped_runs_route(request: Request, month: Month) -> Response:
    """The month's agent runs stopped by their caps (`runs:`), the latest first: what each had
    spent, and why it was stopped."""
    rt: Runtime = request.app.state.runtime
    check_admin(rt, request, finance=True)
    runs = await asyncio.to_thread(capped_runs, rt.engine, month)
    return Response(orjson.dumps({"month": month, "runs": [r.as_dict() for r in runs]}), media_type="application/json")


@router.get("/runs/{trace_id}", response_model=RunOut)
async def run_route(
    request: Request,
    trace_id: TraceId,
    month: Annotated[str | None, Query(pattern=MONTH_PATTERN, description="only the calls billed in this month")] = None,
) -> Response:
    """One run with its call tree: every call of the trace (or of one month's)."""
    rt: Runtime = request.app.state.runtime
    check_admin(rt, request, finance=True)
    run = await asyncio.to_thread(run_detail, rt.engine, trace_id, month)
    if run is None:
        raise ProxyError(404, "run_not_found", f"no call of run {trace_id!r} in the ledger", param="trace_id")
    return Response(orjson.dumps(run.as_dict()), media_type="application/json")
