"""`GET /v1/meterline/usage`: what the holder of a virtual key may see of its own spending.

Its id, team and department, its spend this month, the budgets it is charged against (its
department's, its team's, its own) with what they leave, and when it expires. Nothing of
any other key: the answer is about the key that authenticated the request, and no parameter
can name another.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from meterline.costing import period_of
from meterline.reports.usage import holder_usage

from .admin.models import HolderUsage
from .auth import authenticate
from .runtime import Runtime

router = APIRouter(tags=["usage"])


@router.get("/v1/meterline/usage", response_model=HolderUsage)
async def key_usage(request: Request) -> Response:
    rt: Runtime = request.app.state.runtime
    key = await authenticate(rt, request)
    month = period_of(datetime.now(UTC))
    body = await asyncio.to_thread(
        holder_usage, rt.engine, rt.settings, month, key_id=key.id, team=key.team, key_budget_usd=key.budget_usd
    )
    expires = key.expires_at
    body["expires_at"] = None if expires is None else expires.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return JSONResponse(body)
