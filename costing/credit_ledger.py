"""Credit grants in the ledger: the ones made through the admin API (the `credit_grants`
table), the config's, and the spend that draws them down, read from the ledger.

`drawdown(conn, grants, until)` is the one derivation every reader uses: the proxy's balance
refresh, the chargeback, the admin API and the dashboard.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

import sqlalchemy as sa

from .credits import Drawdown, Grant, Spend, boundaries, draw_down, to_pico
from .errors import KeyRequestError
from .tables import EVENTS, GRANTS, ROLLUPS, CreditGrant, utcnow

if TYPE_CHECKING:  # config imports months, which closes a month with the credits drawn: no runtime import
    from .config import Settings

HOUR = timedelta(hours=1)
LINE_REST = ["project", "kind", "provider", "model", "tool", "adjustment", "tags"]  # chargeback.LINE_DIMS after team
# SQLite keeps times as text, written with or without microseconds and an offset, so a bound
# compared in SQL can miss a row at that very instant: SQL gets a second either side, and the
# exact bounds are applied here.
SLACK = timedelta(seconds=1)


def _utc(ts: datetime | None) -> datetime | None:
    if ts is None:
        return None
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def configured_grants(settings: Settings) -> list[Grant]:
    out = []
    for g in settings.credits:
        scope = ("team", g.team) if g.team is not None else ("department", g.department or "")
        out.append(
            Grant(
                id=g.id,
                scope=scope,
                amount_pico=to_pico(g.amount_usd),
                effective_from=g.effective_from,
                expires=g.expires,
                priority=g.priority,
                recurring=g.recurring == "monthly",
                rollover_max_pico=None if g.rollover_max_usd is None else to_pico(g.rollover_max_usd),
            )
        )
    return out


def _grant(row: CreditGrant) -> Grant:
    scope = ("team", row.team) if row.team else ("department", row.department)
    return Grant(
        id=row.id,
        scope=scope,
        amount_pico=row.amount_pico,
        effective_from=_utc(row.effective_from) or row.effective_from,
        expires=_utc(row.expires_at),
        priority=row.priority,
        recurring=row.recurring == "monthly",
        rollover_max_pico=row.rollover_max_pico,
        revoked_at=_utc(row.revoked_at),
        source="api",
    )


def stored_grants(db: sa.Engine | sa.Connection) -> list[Grant]:
    q = sa.select(GRANTS).order_by(GRANTS.c.id)
    if isinstance(db, sa.Connection):
        rows = db.execute(q).mappings().all()
    else:
        with db.connect() as conn:
            rows = conn.execute(q).mappings().all()
    return [_grant(CreditGrant(**r)) for r in rows]


def all_grants(db: sa.Engine | sa.Connection, settings: Settings) -> list[Grant]:
    """The config's grants and the admin API's."""
    return configured_grants(settings) + stored_grants(db)


def create_grant(
    engine: sa.Engine,
    settings: Settings,
    *,
    grant_id: str,
    department: str | None,
    team: str | None,
    amount_usd: Decimal,
    effective_from: datetime,
    expires: datetime | None = None,
    priority: int = 0,
    recurring: bool = False,
    rollover_max_usd: Decimal | None = None,
) -> Grant:
    """Store a grant made through the admin API. Raises KeyRequestError naming the field."""
    if (department is None) == (team is None):
        raise KeyRequestError("give either `department` or `team`", param="team")
    depts = {d.id for d in settings.departments}
    teams = {t.id for d in settings.departments for t in d.teams}
    if department is not None and department not in depts:
        raise KeyRequestError(f"unknown department {department!r}", param="department")
    if team is not None and team not in teams:
        raise KeyRequestError(f"unknown team {team!r}", param="team")
    if expires is not None and expires <= effective_from:
        raise KeyRequestError("expires must come after effective_from", param="expires")
    if rollover_max_usd is not None and not recurring:
        raise KeyRequestError("rollover_max_usd needs `recurring: monthly`", param="rollover_max_usd")
    if any(g.id == grant_id for g in settings.credits):
        raise KeyRequestError(f"grant id {grant_id!r} is the config's", param="id")
    row = CreditGrant(
        id=grant_id,
        department=department or "",
        team=team or "",
        amount_pico=to_pico(amount_usd),
        effective_from=effective_from,
        expires_at=expires,
        priority=priority,
        recurring="monthly" if recurring else "",
        rollover_max_pico=None if rollover_max_usd is None else to_pico(rollover_max_usd),
    )
    with engine.begin() as conn:
        if conn.execute(sa.select(GRANTS.c.id).where(GRANTS.c.id == grant_id)).first() is not None:
            raise KeyRequestError(f"a grant with id {grant_id!r} exists", param="id")
        conn.execute(sa.insert(GRANTS).values(**row.model_dump()))
    return _grant(row)


def revoke_grant(engine: sa.Engine, grant_id: str, at: datetime | None = None) -> Grant | None:
    """Stop an API grant counting from `at` (now); None if there is no such grant."""
    when = at or utcnow()
    with engine.begin() as conn:
        row = conn.execute(sa.select(GRANTS).where(GRANTS.c.id == grant_id)).mappings().first()
        if row is None:
            return None
        if row["revoked_at"] is None:
            conn.execute(sa.update(GRANTS).where(GRANTS.c.id == grant_id).values(revoked_at=when))
        row = conn.execute(sa.select(GRANTS).where(GRANTS.c.id == grant_id)).mappings().first()
    assert row is not None
    return _grant(CreditGrant(**row))


def read_spend(conn: sa.Connection, grants: list[Grant], until: datetime) -> list[Spend]:
    """The spend that may draw `grants`, up to `until`: hourly from the rollups, event by event
    in the hours where a grant starts or stops off the hour."""
    if not grants:
        return []
    start = min(g.effective_from for g in grants).replace(minute=0, second=0, microsecond=0)
    teams = sorted({g.scope[1] for g in grants if g.scope[0] == "team"})
    depts = sorted({g.scope[1] for g in grants if g.scope[0] == "department"})
    exact_hours = {b.replace(minute=0, second=0, microsecond=0) for b in boundaries(grants)}
    r, e = ROLLUPS, EVENTS
    who = sa.or_(r.c.team.in_(teams), r.c.department.in_(depts))
    dims = [r.c[d] for d in LINE_REST]
    q = (
        sa.select(r.c.hour, r.c.department, r.c.team, r.c.charge_period, *dims, sa.func.sum(r.c.cost_pico))
        .where(r.c.hour >= start - SLACK, r.c.hour < until + SLACK, who, r.c.department != "")
        .group_by(r.c.hour, r.c.department, r.c.team, r.c.charge_period, *dims)
    )
    out: list[Spend] = []
    for raw_hour, dept, team, period, *rest, pico in conn.execute(q):
        hour = _utc(raw_hour) or raw_hour
        if hour in exact_hours or not pico or not start <= hour < until:
            continue
        out.append(Spend(hour, dept, team, period, int(pico), _line(rest)))
    ewho = sa.or_(e.c.team.in_(teams), e.c.department.in_(depts))
    for hour in sorted(exact_hours):
        if hour >= until or hour + HOUR <= start:
            continue
        eq = sa.select(e.c.ts, e.c.department, e.c.team, e.c.charge_period, *(e.c[d] for d in LINE_REST), e.c.cost_pico).where(
            e.c.ts >= hour - SLACK, e.c.ts < min(hour + HOUR, until) + SLACK, ewho, e.c.cost_pico > 0, e.c.department != ""
        )
        for raw_ts, dept, team, period, *rest, pico in conn.execute(eq):
            ts = _utc(raw_ts) or raw_ts
            if hour <= ts < min(hour + HOUR, until):
                out.append(Spend(ts, dept, team, period, int(pico), _line(rest)))
    return out


def _line(rest: list[object]) -> tuple[object, ...]:
    return tuple(bool(v) if d == "adjustment" else v for d, v in zip(LINE_REST, rest, strict=True))


def drawdown(db: sa.Engine | sa.Connection, grants: list[Grant], until: datetime) -> Drawdown:
    """The draw-down of `grants` by the ledger's spend before `until`."""
    if isinstance(db, sa.Connection):
        return draw_down(grants, read_spend(db, grants, until), until)
    with db.connect() as conn:
        return draw_down(grants, read_spend(conn, grants, until), until)


def period_credits(db: sa.Engine | sa.Connection, settings: Settings, period: str) -> dict[tuple[object, ...], int]:
    """Credits drawn by the calls billed in `period`, per chargeback line (LINE_DIMS), pico."""
    grants = all_grants(db, settings)
    if not grants:
        return {}
    y, m = int(period[:4]), int(period[5:])  # a month of MONTH_PATTERN: its end is a datetime
    end = datetime(y + m // 12, m % 12 + 1, 1, tzinfo=UTC)
    d = drawdown(db, grants, end)
    return {k[1:]: pico for k, pico in d.by_line.items() if k[0] == period and pico}


__all__ = [
    "all_grants",
    "configured_grants",
    "create_grant",
    "drawdown",
    "period_credits",
    "read_spend",
    "revoke_grant",
    "stored_grants",
]
