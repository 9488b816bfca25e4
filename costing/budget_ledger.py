"""What budgets read from the ledger: a month's spend per budgeted scope (which recorded calls
it already holds: landings.py)."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

import sqlalchemy as sa

from .budget_accountant import Scope
from .money import from_pico
from .tables import EVENTS, ROLLUPS


def ledger_spend(conn: sa.Connection, scopes: Iterable[Scope], period: str) -> dict[Scope, Decimal]:
    """`period`'s spend of each of `scopes` in the ledger (scopes without any are left out).

    Departments and teams from the hourly rollups; keys from the events, which the rollups
    do not split by key."""
    r, e = ROLLUPS, EVENTS
    spend: dict[Scope, Decimal] = {}
    wanted: dict[str, list[str]] = {"department": [], "team": [], "key": []}
    for kind, ident in scopes:
        wanted[kind].append(ident)
    for kind, table, col in (("department", r, "department"), ("team", r, "team"), ("key", e, "key_id")):
        if not wanted[kind]:
            continue
        q = (
            sa.select(table.c[col], sa.func.sum(table.c.cost_pico))
            .where(table.c.charge_period == period, table.c[col].in_(wanted[kind]))
            .group_by(table.c[col])
        )
        for name, pico in conn.execute(q):
            spend[(kind, name)] = from_pico(int(pico or 0))
    return spend


__all__ = ["ledger_spend"]
