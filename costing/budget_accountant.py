"""The budget accountant: admission and settlement in memory, no I/O, per process.

    spent(scope) = committed  the month's spend as the ledger had it at the last read, plus the
                              calls this process recorded that the read did not include
                 + reserved   estimates of the calls in flight

A call is admitted while `spent < cap` for every scope it is charged to, where the cap is the
budget or this replica's lease on it when lower (budget_leases.py); it then reserves an
estimate of its cost until its event is recorded, when the reservation gives way to the
actual cost. A refused call raises BudgetExceeded and nothing more: the caller records it
(status `rejected`). Whoever reads the ledger (budgets.py) hands the read in with `reread`; the
accountant itself never touches a database, so all of this is tested without one.

Alerts are values (budget_alerts.Alert), queued once per scope and month for the caller to
store and announce: `budget_soft` when a scope's spend reaches the soft threshold,
`budget_hard` at its first refusal.
"""

from __future__ import annotations

import queue
import threading
from decimal import Decimal
from typing import Any

from .budget_alerts import Alert
from .budget_estimates import Admissible, Estimator
from .config import Settings
from .errors import BudgetExceeded
from .landings import Landings
from .money import ZERO, from_pico, usd
from .months import period_of
from .reservations import MAX_AGE as RESERVATION_MAX_AGE
from .reservations import Reservations

Scope = tuple[str, str]  # ("department" | "team" | "key", id)
MAX_CACHED_SCOPES = 100_000  # (department, team, key) triples whose scopes are remembered


def configured_limits(settings: Settings) -> dict[Scope, Decimal]:
    """The monthly budget of each department, team and key that has one."""
    limits: dict[Scope, Decimal] = {}
    for d in settings.departments:
        if d.budget_usd_monthly is not None:
            limits[("department", d.id)] = d.budget_usd_monthly
        for t in d.teams:
            if t.budget_usd_monthly is not None:
                limits[("team", t.id)] = t.budget_usd_monthly
    for key_id, amount in settings.budgets.keys.items():
        limits[("key", key_id)] = amount
    return limits


class _PerScope:
    """What admission and settlement read per scope on every call, derived from the limits,
    the credit allowance and this replica's ceilings (the objects it was made from)."""

    __slots__ = ("allowance", "caps", "ceiling", "limits", "scopes_of", "soft_at", "spendable")

    def __init__(self, limits: dict[Scope, Decimal], allowance: dict[Scope, Decimal], ceiling: dict[Scope, Decimal],
                 soft_threshold_percent: Decimal, scopes_of: dict[tuple[str, str, str], tuple[Scope, ...]]):  # fmt: skip
        self.limits, self.allowance, self.ceiling = limits, allowance, ceiling
        self.spendable: dict[Scope, Decimal] = {}  # the budget plus its credit allowance
        self.caps: dict[Scope, Decimal] = {}  # that, or the lease when lower
        self.soft_at: dict[Scope, Decimal] = {}  # the spend from which `budget_soft` is due
        for s, limit in limits.items():
            spendable = self.spendable[s] = limit + allowance.get(s, ZERO)
            c = ceiling.get(s)
            self.caps[s] = spendable if c is None else min(spendable, c)
            self.soft_at[s] = (spendable * soft_threshold_percent).scaleb(-2)  # exact: / 100
        self.scopes_of = scopes_of  # shared with the next set while the limits are the same

    def scopes(self, department: str, team: str, key_id: str) -> tuple[Scope, ...]:
        """The scopes of these that have a budget."""
        k = (department, team, key_id)
        scopes = self.scopes_of.get(k)
        if scopes is None:
            found = (("department", department), ("team", team), ("key", key_id))
            scopes = tuple(s for s in found if s[1] and s in self.limits)
            if len(self.scopes_of) < MAX_CACHED_SCOPES:  # key ids come and go: stay bounded
                self.scopes_of[k] = scopes
        return scopes


def _year_month(period: str) -> tuple[int, int]:
    return int(period[:4]), int(period[5:7])


class Accountant:
    """Parameters:
    limits: the monthly budget per scope (`configured_limits`).
    estimator: guesses a call's cost before it is sent, learning from recorded calls.
    soft_threshold_percent: the share of a budget at which `budget_soft` is alerted.
    period: the month counted from the start (YYYY-MM); `reread` moves it on.
    """

    def __init__(self, limits: dict[Scope, Decimal], estimator: Estimator, soft_threshold_percent: Decimal, period: str):
        # Replaced, never changed in place (key_budget), so readers need no lock.
        self.limits = limits
        self._configured = frozenset(limits)
        self.estimator = estimator
        self.soft_threshold_percent = soft_threshold_percent
        self.period = period
        self._month = _year_month(period)  # `period` as (year, month), to place an event's ts
        # Per scope, the ledger's spend at the last read plus the calls of `period` recorded
        # since that the read did not include: one running sum, which admit reads and settle
        # adds to on every call, and which each read of the ledger moves on (`reread`).
        self._committed: dict[Scope, Decimal] = {}
        self._ledger: dict[Scope, Decimal] = {}  # that read
        # Recorded calls not yet known to be in the ledger, of any month (a call of the next
        # one counts from the read that moves `period` on; one of the last, never again).
        self._recorded: dict[str, tuple[str, tuple[Scope, ...], Decimal]] = {}
        self._elsewhere = 0  # how many of them are not of `period`
        self._reserved: Reservations[Decimal] = Reservations(ZERO)
        # This replica's lease per scope, as a ceiling on spend: ledger + committed (budget_leases.py).
        self._ceiling: dict[Scope, Decimal] = {}
        self._alerted: set[tuple[str, Scope, str]] = set()
        # Which recorded calls the ledger has; its writer's word, else the ledger is asked.
        self.landings = Landings(lambda: bool(self.limits))
        self._alerts: queue.SimpleQueue[Alert] = queue.SimpleQueue()
        self._lock = threading.Lock()
        # What a scope may spend beyond its budget: credits drawn this month and left to draw
        # (credit_balances.budget_allowance); replaced, never changed in place.
        self.allowance: dict[Scope, Decimal] = {}
        self._per_scope = _PerScope(self.limits, self.allowance, self._ceiling, soft_threshold_percent, {})

    def key_budget(self, key_id: str, budget: Decimal | None) -> None:
        """A key's own monthly budget, from the keys table (None: it has none). The config's
        `budgets.keys` entry for the key, if any, wins. Its spend is read at the next refresh."""
        scope = ("key", key_id)
        if scope in self._configured:
            return
        with self._lock:
            limits = dict(self.limits)
            if budget is None:
                limits.pop(scope, None)
            else:
                limits[scope] = budget
            self.limits = limits

    # -- the request path ---------------------------------------------------------------------

    def scopes(self, department: str, team: str, key_id: str) -> tuple[Scope, ...]:
        return self._derived().scopes(department, team, key_id)

    def _derived(self) -> _PerScope:
        """The per-scope values of the current limits, allowance and ceilings. Each of those is
        replaced, never changed in place, so one identity check each tells whether they are
        still current; a new set is built whole and swapped in as one object."""
        d = self._per_scope
        limits, allowance, ceiling = self.limits, self.allowance, self._ceiling
        if d.limits is limits and d.allowance is allowance and d.ceiling is ceiling:
            return d
        d = _PerScope(limits, allowance, ceiling, self.soft_threshold_percent, d.scopes_of if d.limits is limits else {})
        self._per_scope = d
        return d

    def spent(self, scope: Scope) -> Decimal:
        """Spend of the current month as this process knows it, reservations included."""
        with self._lock:
            return self._spent(scope, with_reserved=True)

    def reserved(self, scope: Scope) -> Decimal:
        """What calls in flight in this process hold on a scope's budget."""
        with self._lock:
            return self._reserved.held(scope)

    def _spent(self, scope: Scope, *, with_reserved: bool) -> Decimal:
        committed = self._committed.get(scope, ZERO)
        return committed + self._reserved.held(scope) if with_reserved else committed

    def estimate(self, call: Admissible) -> Decimal:
        """A conservative guess of the call's cost, made before it is sent."""
        return self.estimator.estimate(call)

    def admit(self, call: Admissible) -> Decimal:
        """Reserve the call's estimate and return it, or raise BudgetExceeded. Budgets answer and
        never record: the caller records the refusal (status `rejected`).

        A caller that knows the price beforehand (an MCP tool's price per call) gives it as
        `call.reserved`; the larger of it and our own estimate is reserved."""
        own = getattr(call.key, "budget_usd", None)  # a key issued with a budget of its own
        if own is not None and self.limits.get(("key", call.key.id)) != own:
            self.key_budget(call.key.id, own)
        if not self.limits:
            return ZERO
        d = self._derived()  # one set of scopes and caps for the whole decision
        scopes = d.scopes(call.payer.department, call.payer.team, call.key.id)
        if not scopes:
            return ZERO
        estimate = self.estimator.estimate(call)
        known = call.reserved
        if known and known > estimate:
            estimate = known
        with self._lock:
            caps, committed, held = d.caps, self._committed, self._reserved.held
            over, spent = None, ZERO
            for s in scopes:
                # `_spent(s, with_reserved=True)`, written out: this runs for every call.
                spent = committed.get(s, ZERO) + held(s)
                if spent >= caps[s]:
                    over = s
                    break
            if over is None:
                self._reserved.hold(call.call_id, [(s, estimate) for s in scopes])
                return estimate
        error = BudgetExceeded(over[0], over[1], usd(self.limits[over], 2), usd(spent, 2))
        self._alert("budget_hard", over, spent)
        raise error

    def spendable(self) -> dict[Scope, Decimal]:
        """Each scope's budget plus its credit allowance: what its spend may reach."""
        return dict(self._derived().spendable)

    def cap(self, scope: Scope) -> Decimal:
        """The budget (plus its credit allowance), or this replica's lease on it when that is lower."""
        return self._derived().caps[scope]

    def settle(self, event: dict[str, Any], call: Any = None) -> None:
        """Meter observer: a recorded call replaces its reservation with its actual cost."""
        if not self.limits:
            return
        cost = from_pico(event["cost_pico"])
        d = self._derived()
        scopes = d.scopes(event["department"], event["team"], event["key_id"])
        call_id, ts = event["call_id"], event["ts"]
        crossed: list[tuple[Scope, Decimal]] = []
        with self._lock:
            self._reserved.release(call_id)
            if event["status"] != "rejected":
                self.estimator.learn(event, cost)
            if not (cost and scopes):
                return
            if call_id in self._recorded:  # recorded twice (a bug upstream): counted once
                self._forget(call_id)
            if (ts.year, ts.month) != self._month:  # not the month being counted
                self._recorded[call_id] = (period_of(ts), scopes, cost)
                self._elsewhere += 1
                return
            self._recorded[call_id] = (self.period, scopes, cost)
            committed, soft_at = self._committed, d.soft_at
            for s in scopes:
                spent = committed[s] = committed.get(s, ZERO) + cost
                # Only a scope at its soft threshold goes on to check_soft (and its alert).
                if spent >= soft_at[s]:
                    crossed.append((s, spent))
        if crossed:
            self.check_soft(crossed)

    def _forget(self, call_id: str) -> None:
        period, scopes, cost = self._recorded.pop(call_id)
        if period != self.period:
            self._elsewhere -= 1
            return
        for s in scopes:
            self._committed[s] -= cost

    # -- what the ledger has ------------------------------------------------------------------

    def pending(self) -> list[str]:
        """Recorded calls not yet known to be in the ledger."""
        with self._lock:
            return list(self._recorded)

    def reread(
        self, period: str, spend: dict[Scope, Decimal], landed: set[str]
    ) -> tuple[dict[Scope, Decimal], list[tuple[Scope, Decimal]]]:
        """Take in a fresh read of the ledger: `period`'s spend per scope, and which of our
        recorded calls it includes (read before the sums, so a call written in between is
        counted twice until the next read, never missed).

        Returns our spend beyond that read per scope (for the lease) and each scope's spend
        (for `check_soft`). Reservations older than RESERVATION_MAX_AGE are dropped."""
        with self._lock:
            if period != self.period:
                self._alerted.clear()
            beyond = self._beyond_read(period, landed)
            self.period, self._month = period, _year_month(period)
            committed = dict(spend)
            for s, amount in beyond.items():
                if amount:
                    committed[s] = committed.get(s, ZERO) + amount
            self._ledger, self._committed = spend, committed
            self._reserved.expire()
            crossed = [(s, self._spent(s, with_reserved=False)) for s in self.limits]
            mine = {s: self._spent(s, with_reserved=True) - spend.get(s, ZERO) for s in self.limits}
        return mine, crossed

    def _beyond_read(self, period: str, landed: set[str]) -> dict[Scope, Decimal]:
        """Forget the calls of `landed` and of months other than `period`; what the rest add
        to the ledger per scope. Worked out from the last read unless some recorded call is
        of another month, so that a refresh (under the lock the request path takes) costs
        O(landed calls), not O(recorded calls)."""
        pop = self._recorded.pop
        if period == self.period and not self._elsewhere:
            last = self._ledger
            beyond = {s: c - last.get(s, ZERO) for s, c in self._committed.items()}
            for cid in landed:
                held = pop(cid, None)
                if held is not None:
                    for s in held[1]:
                        beyond[s] = beyond.get(s, ZERO) - held[2]
            return beyond
        for cid in landed:
            pop(cid, None)
        for cid in [cid for cid, (p, _, _) in self._recorded.items() if p != period]:
            pop(cid)
        self._elsewhere = 0
        beyond = {}
        for _, scopes, cost in self._recorded.values():
            for s in scopes:
                beyond[s] = beyond.get(s, ZERO) + cost
        return beyond

    def set_ceilings(self, period: str, spend: dict[Scope, Decimal], committed: dict[Scope, Decimal]) -> None:
        """This replica's leases for `period`: spend may reach the ledger read plus `committed`."""
        with self._lock:
            if self.period == period:
                self._ceiling = {s: spend.get(s, ZERO) + c for s, c in committed.items()}

    # -- alerts -------------------------------------------------------------------------------

    def check_soft(self, spends: list[tuple[Scope, Decimal]]) -> None:
        """Queue `budget_soft` for each scope whose spend reached the soft threshold."""
        soft_at = self._derived().soft_at
        for s, spent in spends:
            if s in soft_at and spent >= soft_at[s]:
                self._alert("budget_soft", s, spent)

    def _alert(self, kind: str, scope: Scope, spent: Decimal) -> None:
        key = (kind, scope, self.period)
        if key in self._alerted:
            return
        self._alerted.add(key)
        self._alerts.put(Alert(kind, scope, self.period, self.limits[scope], spent, self.soft_threshold_percent))

    def alerts(self) -> list[Alert]:
        """The alerts queued so far (each once), oldest first; the queue is emptied."""
        out: list[Alert] = []
        while True:
            try:
                out.append(self._alerts.get_nowait())
            except queue.Empty:
                return out


__all__ = ["RESERVATION_MAX_AGE", "Accountant", "Scope", "configured_limits"]
