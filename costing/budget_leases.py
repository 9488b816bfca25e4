"""Budget leases: what makes a budget hold for a fleet of replicas, not per process.

Every replica re-reads the ledger every `budgets.refresh_seconds` (costing/budgets.py). With
leases it also, in the same transaction and under one fleet-wide lock, publishes how far its
own spend may go beyond the ledger it just read, per budgeted scope:

    committed(r) = pending(r) + share(r)
    pending(r)   = its calls recorded but not yet seen in the ledger, plus its reservations
    share(r)     = (budget - ledger - pending(r) - committed of the other live replicas) / live replicas

and admits a call only while its spend stays under `ledger + committed(r)` (and the budget).
Each replica's spend beyond the ledger it read is then covered by what it published, and as
renewals take turns and the ledger only grows, the whole fleet's spend stays within the
budget: the bound of a single process (the calls in flight costing more than their estimates)
holds for the fleet, added over its replicas, whatever the refresh timing.

What it costs: near the edge a replica can refuse a call while budget is left in another's
share or not handed out yet; every renewal returns unused shares to the pool, so what is left
is handed out again within a refresh interval or two. Limits of the guarantee: a replica that
dies stops renewing and its lease is ignored after `ttl`; if its spool is replayed only after
that (it was down longer), the spend in it (at most its last `committed`) comes on top. And
calls a replica admits during the milliseconds its own renewal commits are checked against
its previous lease.
"""

from __future__ import annotations

import hashlib
import os
import socket
from datetime import datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from pathlib import Path

import sqlalchemy as sa

from .budget_accountant import Scope
from .engine import dialect_insert
from .money import PICO, ZERO, from_pico
from .tables import LEASES

LEASE_LOCK = 0x6D6C_6C65  # PostgreSQL advisory lock: renewals take turns


def replica_id(spool_dir: str) -> str:
    """A serving process's name: its host, its spool root and its pid (the processes of a host
    share one spool root, each with a folder and a lease of its own). A restarted process is
    a new replica; the lease of the one before it runs out after `ttl`."""
    where = f"{socket.gethostname()}:{Path(spool_dir).resolve()}:{os.getpid()}"
    return hashlib.sha256(where.encode()).hexdigest()[:32]


def lock(conn: sa.Connection) -> None:
    """Take the fleet's renewal lock for this transaction (SQLite: its single write lock)."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": LEASE_LOCK})
    else:
        conn.execute(sa.text("DELETE FROM budget_leases WHERE 1 = 0"))


def renew(
    conn: sa.Connection,
    *,
    replica: str,
    period: str,
    limits: dict[Scope, Decimal],
    ledger: dict[Scope, Decimal],
    pending: dict[Scope, Decimal],
    now: datetime,
    ttl: timedelta,
) -> dict[Scope, Decimal]:
    """Publish this replica's leases for `period`; returns `committed` per scope.

    Call under `lock`, with `ledger` read after taking it.
    """
    t = LEASES
    rows = conn.execute(
        sa.select(t.c.scope, t.c.replica, t.c.committed_pico).where(
            t.c.period == period, t.c.replica != replica, t.c.heartbeat_at >= now - ttl
        )
    ).all()
    others: dict[str, int] = {}
    for scope, _, pico in rows:
        others[scope] = others.get(scope, 0) + pico
    live = 1 + len({r for _, r, _ in rows})
    committed: dict[Scope, Decimal] = {}
    values = []
    for scope, limit in limits.items():
        name = f"{scope[0]}:{scope[1]}"
        mine = pending.get(scope, ZERO)
        free = limit - ledger.get(scope, ZERO) - mine - from_pico(others.get(name, 0))
        share = max(ZERO, free / live)
        pico = int(((mine + share) / PICO).to_integral_value(rounding=ROUND_FLOOR))
        committed[scope] = from_pico(pico)
        values.append({"scope": name, "period": period, "replica": replica, "committed_pico": pico, "heartbeat_at": now})
    if values:
        ins = dialect_insert(conn.engine, t)
        conn.execute(
            ins.on_conflict_do_update(
                index_elements=["scope", "period", "replica"],
                set_={"committed_pico": ins.excluded.committed_pico, "heartbeat_at": ins.excluded.heartbeat_at},
            ),
            values,
        )
    # Leases of months gone by, and of replicas long gone, are of no use to anyone.
    conn.execute(sa.delete(t).where(t.c.heartbeat_at < now - max(ttl * 10, timedelta(days=1))))
    return committed


__all__ = ["LEASE_LOCK", "lock", "renew", "replica_id"]
