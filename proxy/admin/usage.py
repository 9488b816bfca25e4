"""Admin: usage for a month grouped as asked, and every budget's state (admin or finance key)."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.responses import JSONResponse, Response

from meterline.costing import exact
from meterline.reports import budget_status
from meterline.reports.usage import GROUPS, usage

from ..auth import check_admin
from ..errors import invalid_request
from ..runtime import Runtime
from .models import BudgetsOut, Month, UsageOut

router = APIRouter(tags=["usage"])

_GROUP_BY = rf"^({'|'.join(GROUPS)})?(,({'|'.join(GROUPS)}))*$"


@router.get("/usage", response_model=UsageOut, response_model_exclude_none=True)
async def usage_route(
    request: Request,
    month: Month,
    group_by: Annotated[
        str, Query(pattern=_GROUP_BY, max_length=100, description=f"comma-separated, of: {', '.join(GROUPS)}")
    ] = "department,team",
) -> Response:
    """The month's requests, tokens and cost per group: the same sums as
    `meterline report showback`, to the last digit."""
    rt: Runtime = request.app.state.runtime
    check_admin(rt, request, finance=True)
    groups = [g for g in group_by.split(",") if g]
    if len(set(groups)) != len(groups):
        raise invalid_request("group_by: each group once", "group_by")
    result = await asyncio.to_thread(usage, rt.engine, month, groups)
    return JSONResponse(result.as_dict())


@router.get("/budgets", response_model=BudgetsOut)
async def budgets_route(request: Request, month: Month) -> Response:
    """Every budget (departments, teams, keys) with its limit, the month's spend in the ledger,
    what calls in flight on this replica reserve, what is left and the month-end forecast."""
    rt: Runtime = request.app.state.runtime
    check_admin(rt, request, finance=True)
    rows = await asyncio.to_thread(budget_status, rt.engine, rt.settings, month)
    live = rt.budgets
    out = []
    for b in rows:
        reserved = live.reserved((b.scope, b.id)) if live is not None and live.period == month else Decimal(0)
        out.append(
            {
                "scope": b.scope,
                "id": b.id,
                "name": b.name,
                "department": b.department,
                "limit_usd": exact(b.budget_usd),
                "spent_usd": exact(b.spent_usd),
                "reserved_usd": exact(reserved),
                "remaining_usd": exact(max(b.budget_usd - b.spent_usd - reserved, Decimal(0))),
                "forecast_usd": None if b.forecast_usd is None else exact(b.forecast_usd),
                "used_percent": str(b.used_percent),
                "state": b.state,
            }
        )
    return JSONResponse({"month": month, "budgets": out})
