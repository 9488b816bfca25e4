"""Admin: credit grants, made, listed, shown with their draw-down, revoked.

A grant made here counts on every replica from their next balance refresh
(`budgets.refresh_seconds`); the config's `credits:` are listed too but are changed only in
the config. Balances are derived from the ledger (costing/credit_ledger.py), the same numbers
the chargeback bills.
"""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.responses import JSONResponse, Response

from meterline.costing import exact, from_pico
from meterline.costing.credit_ledger import all_grants, create_grant, drawdown, revoke_grant
from meterline.costing.credits import NEVER, Drawdown, Grant

from ..auth import check_admin
from ..errors import ProxyError, invalid_request
from ..runtime import Runtime
from .credit_models import CreditCreate, CreditDetail, CreditList, CreditOut

router = APIRouter(tags=["credits"])
INSTANT = timedelta(microseconds=1)


def _iso(ts: datetime | None) -> str | None:
    return None if ts is None or ts == NEVER else ts.strftime("%Y-%m-%dT%H:%M:%SZ")


def _status(g: Grant, now: datetime) -> str:
    if g.revoked_at is not None and g.revoked_at <= now:
        return "revoked"
    if g.expires is not None and g.expires <= now:
        return "expired"
    return "scheduled" if g.effective_from > now else "active"


def grant_record(g: Grant, d: Drawdown, now: datetime, department_of: dict[str, str]) -> dict[str, Any]:
    current = d.current(g.id, now)
    kind, ident = g.scope
    return {
        "id": g.id,
        "source": g.source,
        "team": ident if kind == "team" else None,
        "department": department_of.get(ident, "") if kind == "team" else ident,
        "amount_usd": exact(g.amount),
        "effective_from": _iso(g.effective_from),
        "expires": _iso(g.expires),
        "priority": g.priority,
        "recurring": "monthly" if g.recurring else None,
        "rollover_max_usd": None if g.rollover_max_pico is None else exact(from_pico(g.rollover_max_pico)),
        "revoked_at": _iso(g.revoked_at),
        "status": _status(g, now),
        "granted_usd": exact(from_pico(d.granted(g.id))),
        "drawn_usd": exact(from_pico(d.drawn(g.id))),
        "balance_usd": exact(from_pico(current.remaining_pico if current is not None else 0)),
    }


def _detail(g: Grant, d: Drawdown, now: datetime, department_of: dict[str, str]) -> dict[str, Any]:
    instances = [
        {
            "period": i.period or None,
            "start": _iso(i.start),
            "end": _iso(i.end),
            "granted_usd": exact(from_pico(i.fresh_pico)),
            "carried_usd": exact(from_pico(i.carried_pico)),
            "drawn_usd": exact(from_pico(i.drawn_pico)),
            "remaining_usd": exact(from_pico(i.remaining_pico)),
        }
        for i in d.instances
        if i.grant.id == g.id
    ]
    days = [
        {"day": day.isoformat(), "department": dept, "team": team, "drawn_usd": exact(from_pico(p))}
        for (gid, day, dept, team), p in sorted(d.by_day.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][3]))
        if gid == g.id
    ]
    return grant_record(g, d, now, department_of) | {"instances": instances, "days": days}


def _now(rt: Runtime) -> datetime:
    return rt.credits.now()


def _departments(rt: Runtime) -> dict[str, str]:
    return {t.id: d.id for d in rt.settings.departments for t in d.teams}


def _read(rt: Runtime, now: datetime) -> tuple[list[Grant], Drawdown]:
    grants = all_grants(rt.engine, rt.settings)
    return grants, drawdown(rt.engine, grants, now + INSTANT)  # calls recorded at `now` included


@router.post("/credits", status_code=201, response_model=CreditOut)
async def create(request: Request, body: CreditCreate) -> Response:
    """Grant credits to a team or a department."""
    rt: Runtime = request.app.state.runtime
    check_admin(rt, request)
    now = _now(rt)
    grant_id = body.id or f"grant_{secrets.token_hex(8)}"
    g = await asyncio.to_thread(
        create_grant, rt.engine, rt.settings, grant_id=grant_id, department=body.department, team=body.team,
        amount_usd=body.amount_usd, effective_from=(body.effective_from or now).astimezone(UTC),
        expires=body.expires.astimezone(UTC) if body.expires else None, priority=body.priority,
        recurring=body.recurring == "monthly", rollover_max_usd=body.rollover_max_usd,
    )  # fmt: skip
    _, d = await asyncio.to_thread(_read, rt, now)
    return JSONResponse(grant_record(g, d, now, _departments(rt)), status_code=201)


@router.get("/credits", response_model=CreditList)
async def list_(
    request: Request,
    team: Annotated[str | None, Query(max_length=128, description="only grants this team may draw (its own and its department's)")] = None,
    department: Annotated[str | None, Query(max_length=128, description="only grants of this department and its teams")] = None,
) -> Response:
    """Every grant, the config's and the API's, with what it has granted, what calls drew and
    its balance now."""
    rt: Runtime = request.app.state.runtime
    check_admin(rt, request, finance=True)
    now = _now(rt)
    grants, d = await asyncio.to_thread(_read, rt, now)
    dept_of = _departments(rt)
    if team is not None and team not in dept_of:
        raise invalid_request(f"unknown team {team!r}", "team")
    if department is not None and department not in {x.id for x in rt.settings.departments}:
        raise invalid_request(f"unknown department {department!r}", "department")
    rows = [grant_record(g, d, now, dept_of) for g in grants]
    if team is not None:
        rows = [r for r in rows if r["team"] == team or (r["team"] is None and r["department"] == dept_of[team])]
    if department is not None:
        rows = [r for r in rows if r["department"] == department]
    total = sum((Decimal(r["balance_usd"]) for r in rows), Decimal(0))
    return JSONResponse({"object": "list", "data": rows, "balance_usd": exact(total)})


@router.get("/credits/{grant_id}", response_model=CreditDetail)
async def show(request: Request, grant_id: str) -> Response:
    """One grant with its instances (a recurring grant's months) and its draw-down per day and team."""
    rt: Runtime = request.app.state.runtime
    check_admin(rt, request, finance=True)
    now = _now(rt)
    grants, d = await asyncio.to_thread(_read, rt, now)
    g = next((x for x in grants if x.id == grant_id), None)
    if g is None:
        raise ProxyError(404, "grant_not_found", f"no credit grant with id {grant_id!r}", param="id")
    return JSONResponse(_detail(g, d, now, _departments(rt)))


@router.delete("/credits/{grant_id}", response_model=CreditOut)
async def revoke(request: Request, grant_id: str) -> Response:
    """Revoke a grant made through the API: it stops counting now, to the second."""
    rt: Runtime = request.app.state.runtime
    check_admin(rt, request)
    if any(g.id == grant_id for g in rt.settings.credits):
        raise ProxyError(409, "grant_in_config", f"grant {grant_id!r} is the config's: remove it from `credits:`", param="id")
    now = _now(rt)
    g = await asyncio.to_thread(revoke_grant, rt.engine, grant_id, now)
    if g is None:
        raise ProxyError(404, "grant_not_found", f"no credit grant with id {grant_id!r}", param="id")
    _, d = await asyncio.to_thread(_read, rt, now)
    return JSONResponse(grant_record(g, d, now, _departments(rt)))
