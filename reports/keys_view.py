"""The virtual keys as the dashboard's Keys page shows them: who holds each, when it was made,
when it expires ("expires in 12 days", "expired 3 days ago"), whether a rotated secret is still
in its grace period, and what the key spent this month. Never a secret: a key's visible
prefix is all that identifies it, as in `meterline keys list`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import sqlalchemy as sa

from meterline.costing import Org, from_pico, list_keys
from meterline.costing.tables import VirtualKey

from .ledger_queries import key_spend

DAY = 86400.0
EXPIRING_DAYS = 14  # a key expiring within this many days is called out


@dataclass(frozen=True)
class KeyRow:
    id: str
    prefix: str
    name: str
    team: str
    department: str
    project: str
    status: str  # active, expired, revoked
    created_at: datetime
    expires_at: datetime | None
    expiry: str  # "never", "expires in 12 days", "expires today", "expired 3 days ago"
    days_left: int | None  # whole days to expiry, rounded up (negative: past), None: never
    grace_until: datetime | None  # a rotated key's previous secret works until then
    budget_usd: Decimal | None
    spend_usd: Decimal  # this month

    @property
    def expiring(self) -> bool:
        return self.status == "active" and self.days_left is not None and self.days_left <= EXPIRING_DAYS


def key_rows(engine: sa.Engine, org: Org, period: str, *, department: str | None = None,
             now: datetime | None = None) -> list[KeyRow]:  # fmt: skip
    """Every key (of `department`'s teams only, when given), active ones first, then by team and
    creation; with its spend in `period`."""
    now = now or datetime.now(UTC)
    teams = [t for t, team in org.teams.items() if team.department == department] if department else None
    keys = list_keys(engine, teams=teams)
    spend = key_spend(engine, period, [k.id for k in keys]) if keys else {}
    rows = [_row(k, org, now, spend.get(k.id, 0)) for k in keys]
    order = {"active": 0, "expired": 1, "revoked": 2}
    return sorted(rows, key=lambda r: (order[r.status], r.team, r.created_at, r.id))


def _row(k: VirtualKey, org: Org, now: datetime, pico: int) -> KeyRow:
    expires, grace = _aware(k.expires_at), _aware(k.previous_valid_until)
    if k.revoked_at is not None:
        status = "revoked"
    elif expires is not None and expires <= now:
        status = "expired"
    else:
        status = "active"
    days = None if expires is None else math.ceil((expires - now).total_seconds() / DAY)
    team = org.teams.get(k.team)
    return KeyRow(
        id=k.id,
        prefix=k.prefix,
        name=k.name,
        team=k.team,
        department=team.department if team else "",
        project=k.project,
        status=status,
        created_at=_aware(k.created_at) or now,
        expires_at=expires,
        expiry=expiry_label(expires, now),
        days_left=days,
        grace_until=grace if grace is not None and grace > now and k.revoked_at is None else None,
        budget_usd=None if k.budget_pico is None else from_pico(k.budget_pico),
        spend_usd=from_pico(pico),
    )


def expiry_label(expires: datetime | None, now: datetime) -> str:
    if expires is None:
        return "never"
    seconds = (expires - now).total_seconds()
    if seconds > 0:
        days = math.ceil(seconds / DAY)
        return "expires today" if seconds < DAY and expires.date() == now.date() else _days("expires in", days)
    days = math.floor(-seconds / DAY)
    return "expired today" if days == 0 else f"expired {days} day{'s' if days != 1 else ''} ago"


def _days(what: str, n: int) -> str:
    return f"{what} {n} day{'s' if n != 1 else ''}"


def _aware(ts: datetime | None) -> datetime | None:
    """SQLite hands datetimes back naive; they are UTC."""
    return ts.replace(tzinfo=UTC) if ts is not None and ts.tzinfo is None else ts


__all__ = ["EXPIRING_DAYS", "KeyRow", "expiry_label", "key_rows"]
