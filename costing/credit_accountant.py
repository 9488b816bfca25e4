"""The credit accountant: admission of `require_credits` calls, in memory, no I/O, per process.

The same scheme as the budget accountant (budget_accountant.py), on credit pools instead of
budgets. A pool is the grants of one team or one department; a call of team T in department D
may draw the pools ("team", T) and ("department", D). Per pool:

    available = balance   what its grants that count now had left at the last ledger read
              - recorded  what calls this process recorded since drew from it (not yet in that read)
              - reserved  estimates of the calls in flight

capped by this replica's lease on the pool (budget_leases.py, on scopes `credits-team:T`,
`credits-department:D`): what its calls may draw beyond the read the lease was renewed on, kept
as the balance they may take the pool down to (a floor), so calls that land between the read
and the lease's renewal are not counted again as room. A call that needs credits is admitted
while a pool it may draw has something available, and reserves its estimate there; once
recorded, its cost replaces the reservation. With nothing available it raises
CreditsExhausted and the caller records the refusal (status `rejected`). What the calls really
drew is always the derivation from the ledger (credits.py); this only decides admission
between two reads.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any

from .budget_estimates import Admissible, Estimator
from .credits import Drawdown, Instance, Scope, to_pico
from .errors import CreditsExhausted
from .landings import Landings
from .money import from_pico, usd
from .reservations import MAX_AGE as RESERVATION_MAX_AGE
from .reservations import Reservations


def lease_scope(pool: Scope) -> Scope:
    """The scope a pool's lease is published under (never a budget's name)."""
    return (f"credits-{pool[0]}", pool[1])


class CreditAccountant:
    """Parameters:
    required: the teams and departments with `require_credits: true`.
    team_department: each team's department (a department's calls may draw its teams' pools).
    estimator: the budgets' estimator of a call's cost before it is sent.
    """

    def __init__(self, required: Iterable[Scope], team_department: dict[str, str], estimator: Estimator):
        self.required = frozenset(required)
        self.team_department = team_department
        self.estimator = estimator
        self._pools: dict[Scope, list[Instance]] = {}  # at the last read, in draw order
        self._recorded: dict[str, list[tuple[Scope, int]]] = {}
        self._recorded_sum: dict[Scope, int] = {}
        self._reserved: Reservations[int] = Reservations(0)
        self._floor: dict[Scope, int] = {}  # per pool: balance at the lease's read - the lease
        self.landings = Landings(lambda: bool(self.required))  # which recorded calls the ledger has
        self._lock = threading.Lock()

    def pools_of(self, department: str, team: str) -> list[Scope]:
        return [("team", team), ("department", department)]

    def needs_credits(self, department: str, team: str) -> bool:
        return bool(self.required) and (("team", team) in self.required or ("department", department) in self.required)

    def tracked(self) -> list[Scope]:
        """The pools the required scopes draw from."""
        pools: set[Scope] = set()
        for kind, ident in self.required:
            if kind == "team":
                pools.update(self.pools_of(self.team_department.get(ident, ""), ident))
            else:
                pools.add(("department", ident))
                pools.update(("team", t) for t, d in self.team_department.items() if d == ident)
        return sorted(pools)

    # -- the request path ---------------------------------------------------------------------

    def _available(self, pool: Scope, at: datetime) -> int:
        balance = sum(i.remaining_pico for i in self._pools.get(pool, ()) if i.counts_at(at))
        # A call that lands moves from recorded into the read's balance, so the floor, not a
        # room counted from the read, keeps what the lease allows the same meanwhile.
        room = balance - max(0, self._floor.get(pool, 0))
        return room - self._recorded_sum.get(pool, 0) - self._reserved.held(pool)

    def _ordered(self, department: str, team: str, at: datetime) -> list[Scope]:
        """The call's pools, the one holding the first grant to draw first."""

        def first(pool: Scope) -> tuple[Any, ...]:
            live = [i.order() for i in self._pools.get(pool, ()) if i.counts_at(at)]
            return min(live) if live else (float("inf"),)

        return sorted(self.pools_of(department, team), key=first)

    def _split(self, pools: list[Scope], amount: int, at: datetime) -> list[tuple[Scope, int]]:
        parts: list[tuple[Scope, int]] = []
        left = amount
        for p in pools:
            take = min(left, max(0, self._available(p, at)))
            if take:
                parts.append((p, take))
                left -= take
        if left:  # past what is available (at the edge): on the first pool, as an overdraw
            parts.append((pools[0], left))
        return parts

    def balance(self, department: str, team: str, at: datetime) -> Decimal:
        """What the call's pools have available here now (lease and calls in flight counted)."""
        with self._lock:
            return from_pico(sum(max(0, self._available(p, at)) for p in self.pools_of(department, team)))

    def admit(self, call: Admissible) -> None:
        """Reserve the call's estimate on its pools, or raise CreditsExhausted."""
        dept, team = call.payer.department, call.payer.team
        if not self.needs_credits(dept, team):
            return
        at = call.ts
        estimate = to_pico(max(call.reserved or Decimal(0), self.estimator.estimate(call)))
        with self._lock:
            pools = self._ordered(dept, team, at)
            if sum(max(0, self._available(p, at)) for p in pools) > 0:
                self._reserved.hold(call.call_id, self._split(pools, estimate, at))
                return
        scope = ("team", team) if ("team", team) in self.required else ("department", dept)
        raise CreditsExhausted(scope[0], scope[1], usd(Decimal(0), 2))

    def settle(self, event: dict[str, Any], call: Any = None) -> None:
        """Meter observer: a recorded call's cost replaces its reservation."""
        if not self.required:
            return
        if event["call_id"] in self._reserved and event["status"] != "rejected":
            # The estimates at the edge must not fall below what calls cost, or every call in
            # flight there overdraws: learn from this call's size even with no budget to (which
            # is where the estimator learns otherwise).
            self.estimator.learn(event, from_pico(int(event["cost_pico"])))
        with self._lock:
            self._reserved.release(event["call_id"])
            cost = int(event["cost_pico"])
            dept, team = event["department"], event["team"]
            if not cost or not any(p in self._pools for p in self.pools_of(dept, team)):
                return
            parts = self._split(self._ordered(dept, team, event["ts"]), cost, event["ts"])
            self._recorded[event["call_id"]] = parts
            for p, amount in parts:
                self._recorded_sum[p] = self._recorded_sum.get(p, 0) + amount

    def _forget(self, call_id: str) -> None:
        for p, amount in self._recorded.pop(call_id, ()):
            self._recorded_sum[p] -= amount

    # -- what the ledger has ------------------------------------------------------------------

    def pending(self) -> list[str]:
        with self._lock:
            return list(self._recorded)

    def reread(self, drawdown: Drawdown, landed: set[str], at: datetime) -> tuple[dict[Scope, int], dict[Scope, int]]:
        """Take in a fresh draw-down. Returns, per tracked pool, its balance at `at` and what
        this process holds on it beyond the read (recorded and reserved), for the lease."""
        tracked = self.tracked()
        with self._lock:
            self._pools = {p: [i for i in drawdown.instances if i.grant.scope == p] for p in tracked}
            for cid in landed:
                self._forget(cid)
            self._reserved.expire()
            balance = {p: sum(i.remaining_pico for i in self._pools[p] if i.counts_at(at)) for p in tracked}
            mine = {p: self._recorded_sum.get(p, 0) + self._reserved.held(p) for p in tracked}
        return balance, mine

    def set_ceilings(self, committed: dict[Scope, int], balance: dict[Scope, int]) -> None:
        """This replica's leases: what its calls may draw from each pool beyond the read that
        gave `balance` (reread's)."""
        with self._lock:
            self._floor = {p: balance[p] - c for p, c in committed.items()}


__all__ = ["RESERVATION_MAX_AGE", "CreditAccountant", "lease_scope"]
