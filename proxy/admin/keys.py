"""Admin: issue, list, show, revoke and rotate virtual keys (admin key only).

A change made here is applied to this replica's key cache at once (a revoked key is refused
on its next call); other replicas find a new or rotated secret in the ledger on its first call
and see a revocation at their next refresh (`server.key_refresh_seconds`).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request
from starlette.responses import JSONResponse, Response

from meterline.costing import (
    Org,
    UnknownKey,
    create_key,
    exact,
    get_key,
    key_record,
    list_keys,
    period_of,
    revoke_key,
    rotate_key,
)
from meterline.costing.keys import key_info, set_key_limits
from meterline.costing.tables import VirtualKey
from meterline.reports.usage import key_month_spend

from ..auth import check_admin
from ..errors import invalid_request
from ..runtime import Runtime
from .models import KeyCreate, KeyDetail, KeyIssued, KeyList, KeyPublic, KeyRotate, KeyUpdate

router = APIRouter(tags=["keys"])


def _json(body: dict[str, Any], status: int = 200) -> Response:
    return JSONResponse(body, status_code=status)


@router.post("/keys", status_code=201, response_model=KeyIssued)
async def create(request: Request, body: KeyCreate) -> Response:
    """Issue a key. The answer holds its secret (`key`): the only time it is shown."""
    rt: Runtime = request.app.state.runtime
    check_admin(rt, request)
    org = Org(rt.settings)
    row, secret = await asyncio.to_thread(
        create_key, rt.engine, team=body.team, name=body.name, project=body.project, models=body.models,
        budget_usd=body.budget_usd_monthly, expires_at=body.expires_at, org=org,
        limits=body.limits.model_dump(exclude_none=True) if body.limits else None,
    )  # fmt: skip
    rt.keys.apply([row])
    rt.rate_limits.prepare(key_info(row))
    return _json({"key": secret, **key_record(row, org)}, 201)


@router.get("/keys", response_model=KeyList)
async def list_(
    request: Request,
    team: Annotated[str | None, Query(max_length=128, description="only this team's keys")] = None,
    department: Annotated[str | None, Query(max_length=128, description="only keys of this department's teams")] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="at most this many")] = 100,
    after: Annotated[str | None, Query(max_length=64, description="the page after this key id (a page's last_id)")] = None,
) -> Response:
    """Keys oldest first, without their secrets; `has_more` says whether a next page exists."""
    rt: Runtime = request.app.state.runtime
    check_admin(rt, request)
    org = Org(rt.settings)
    teams: list[str] | None = None
    if department is not None:
        if department not in org.departments:
            raise invalid_request(f"unknown department {department!r}", "department")
        teams = [t.id for t in org.teams.values() if t.department == department]
    if team is not None:
        teams = [team] if teams is None or team in teams else []
    try:
        rows = await asyncio.to_thread(list_keys, rt.engine, teams=teams, after=after, limit=limit + 1)
    except UnknownKey:
        raise invalid_request(f"after: no key with id {after!r}", "after") from None
    page = [key_record(r, org) for r in rows[:limit]]
    return _json(
        {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
            "has_more": len(rows) > limit,
        }
    )


@router.get("/keys/{key_id}", response_model=KeyDetail)
async def show(request: Request, key_id: str) -> Response:
    """One key, without its secret, with what it spent this month."""
    rt: Runtime = request.app.state.runtime
    check_admin(rt, request)
    month = period_of(datetime.now(UTC))

    def read() -> tuple[VirtualKey, Any]:
        return get_key(rt.engine, key_id), key_month_spend(rt.engine, month, key_id)

    row, spend = await asyncio.to_thread(read)
    return _json({**key_record(row, Org(rt.settings)), "month": month, "spend_usd": exact(spend)})


@router.patch("/keys/{key_id}", response_model=KeyPublic)
async def update(request: Request, key_id: str, body: KeyUpdate) -> Response:
    """Change a key's own rate limits (`limits`, replacing the old ones). Applied here at once,
    on other replicas within `server.key_refresh_seconds`."""
    rt: Runtime = request.app.state.runtime
    check_admin(rt, request)
    limits = body.limits.model_dump(exclude_none=True) if body.limits else None
    row = await asyncio.to_thread(set_key_limits, rt.engine, key_id, limits)
    rt.keys.apply([row])
    rt.rate_limits.prepare(key_info(row))
    return _json(key_record(row, Org(rt.settings)))


@router.delete("/keys/{key_id}", response_model=KeyPublic)
async def revoke(request: Request, key_id: str) -> Response:
    """Revoke a key: refused at once here, within `server.key_refresh_seconds` elsewhere."""
    rt: Runtime = request.app.state.runtime
    check_admin(rt, request)
    row = await asyncio.to_thread(revoke_key, rt.engine, key_id)
    rt.keys.apply([row])
    return _json(key_record(row, Org(rt.settings)))


@router.post("/keys/{key_id}/rotate", response_model=KeyIssued)
async def rotate(request: Request, key_id: str, body: Annotated[KeyRotate | None, Body()] = None) -> Response:
    """A new secret for the same key id and attribution. The replaced secret keeps working
    for `grace_seconds` (default `server.key_rotation_grace_seconds`, 24 h); the answer holds
    the new secret, the only time it is shown."""
    rt: Runtime = request.app.state.runtime
    check_admin(rt, request)
    seconds = body.grace_seconds if body is not None and body.grace_seconds is not None else rt.settings.server.key_rotation_grace_seconds
    row, secret = await asyncio.to_thread(rotate_key, rt.engine, key_id, grace=timedelta(seconds=seconds))
    rt.keys.apply([row])
    return _json({"key": secret, **key_record(row, Org(rt.settings))})
