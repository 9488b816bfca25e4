"""Monthly budgets on departments, teams and keys: an alert at a soft threshold, a hard limit.

A call is checked before anything reaches an upstream, without a query per request:

    spent(scope) = ledger    the month's spend as the ledger had it at the last read (a
                             thread re-reads it every `budgets.refresh_seconds`)
                 + recorded  calls this process recorded that the last read did not include
                 + reserved  estimates of the calls in flight

A call is admitted while `spent < budget` for every scope it is charged to (its department,
team and key); it then reserves an estimate of its cost until its event is recorded, when the
reservation gives way to the actual cost. A refused call is recorded (status `rejected`) by
the proxy route that asked.

The bound this gives, per process: a scope's month can pass its budget by less than the
actual cost of the last call admitted plus the amount by which the calls in flight at that
moment exceed their estimates; so at most the cost of the calls in flight, and less than one
call's cost when estimates are not below actual costs. Parallel calls at the edge are refused
as soon as their reservations fill what is left. Several replicas on one database hold the
same bound together, added over the replicas: each re-reads the ledger under a fleet-wide
lock and takes a lease on part of what is left, which caps its own spend beyond the ledger
(costing/budget_leases.py: how, and what it costs near the edge).

Estimates: for LLM calls, the request's bytes / 4 as input tokens (JSON overhead makes this
an over-count) plus the largest output token count of the model's last 50 calls (before any:
`budgets.default_output_tokens`), capped by the request's own `max_tokens` (or
`max_completion_tokens`, `max_output_tokens`) when it sets one, at the price in force; for
other calls, the largest cost of the last 50 calls of the same kind, provider and tool.

Soft alerts fire once per scope and month, fleet-wide: the first process to insert the
`budget_soft` note logs it and POSTs `budgets.webhook_url`, from a background thread. The
first refusal per scope and month leaves a `budget_hard` note the same way.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

import sqlalchemy as sa

from .budget_leases import lock as lock_leases
from .budget_leases import renew, replica_id
from .config import Settings
from .engine import dialect_insert
from .errors import BudgetExceeded
from .ingest import LedgerWriter
from .money import ZERO, from_pico, usd
from .months import period_of
from .prices import PriceBook
from .tables import Event, Note, Rollup

log = logging.getLogger("meterline.budgets")

RECENT = 50  # calls per model/tool the estimate looks back on
MAX_TOOLS = 10_000  # (kind, server, tool) whose recent costs are kept
RESERVATION_MAX_AGE = 15 * 60.0  # seconds; a call not settled by then is assumed gone
BYTES_PER_TOKEN = 4

Scope = tuple[str, str]  # ("department" | "team" | "key", id)


class _Payer(Protocol):
    department: str
    team: str


class _Key(Protocol):
    id: str


class Admissible(Protocol):
    """What budgets need of a call (the proxy's Call, for LLM and MCP calls alike)."""

    call_id: str
    kind: str
    provider: str
    model: str
    tool: str
    request_bytes: int
    ts: datetime
    payer: _Payer
    key: _Key

    @property
    def reserved(self) -> Decimal:
        """A price known before the call (an MCP tool's): the least that is reserved."""
        ...


@dataclass(frozen=True, slots=True)
class Alert:
    kind: str  # budget_soft | budget_hard
    scope: Scope
    period: str
    budget: Decimal
    spent: Decimal


def configured_limits(settings: Settings) -> dict[Scope, Decimal]:
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


class Budgets:
    """Parameters:
    engine: the ledger.
    settings: departments/teams (`budget_usd_monthly`) and `budgets:` (keys, soft threshold,
        webhook, refresh interval).
    prices: the price book the proxy prices calls with (for estimates).
    now: the clock (UTC), replaceable in tests.
    """

    def __init__(
        self,
        engine: sa.Engine,
        settings: Settings,
        prices: PriceBook,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self.engine = engine
        # Replaced, never changed in place (key_budget), so the refresh thread can read it unlocked.
        self.limits = configured_limits(settings)
        self._configured = frozenset(self.limits)
        self.cfg = settings.budgets
        self.prices = prices
        self.now = now
        self.period = period_of(now())
        self._ledger: dict[Scope, Decimal] = {}
        self._recorded: dict[str, tuple[str, tuple[Scope, ...], Decimal]] = {}
        # Running sums of `_recorded` per (month, scope): admit and settle read these on every
        # call, and summing `_recorded` there instead cost O(calls since the last refresh) each.
        self._recorded_sum: dict[tuple[str, Scope], Decimal] = {}
        self._reserved: dict[Scope, Decimal] = {}
        # This replica's lease per scope, as a ceiling on spend: ledger + committed (budget_leases.py).
        self._ceiling: dict[Scope, Decimal] = {}
        self.replica = replica_id(settings.server.spool_dir)
        self.lease_ttl = timedelta(seconds=max(30.0, 10 * self.cfg.refresh_seconds))
        self._reservations: dict[str, tuple[tuple[Scope, ...], Decimal, float]] = {}
        self._outputs: dict[str, deque[int]] = {}
        self._costs: dict[tuple[str, str, str], deque[Decimal]] = {}
        self._alerted: set[tuple[str, Scope, str]] = set()
        # Recorded calls the ledger writer has committed since the last refresh (see `follow`);
        # None without a writer to say so, and then the ledger is asked.
        self._landed: set[str] | None = None
        self._alerts: queue.SimpleQueue[Alert] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="meterline-budgets", daemon=True)

    @classmethod
    def from_settings(cls, engine: sa.Engine, settings: Settings, prices: PriceBook) -> Budgets:
        """Budgets for the config. With none configured they cost a check per call, until a
        key with a budget of its own (`budget_usd_monthly`) makes its first call."""
        return cls(engine, settings, prices)

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

    def start(self) -> None:
        try:
            self.refresh()
        except sa.exc.SQLAlchemyError as e:
            # The proxy serves with the ledger down (calls are spooled); budgets then count only
            # what this process sees until the ledger answers again.
            log.warning("budget spend not read yet (ledger unavailable): %s", str(e).splitlines()[0])
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self._send_alerts()

    # -- the request path: no I/O here ------------------------------------------------------

    def scopes(self, department: str, team: str, key_id: str) -> tuple[Scope, ...]:
        found = (("department", department), ("team", team), ("key", key_id))
        return tuple(s for s in found if s[1] and s in self.limits)

    def spent(self, scope: Scope) -> Decimal:
        """Spend of the current month as this process knows it, reservations included."""
        with self._lock:
            return self._spent(scope, with_reserved=True)

    def reserved(self, scope: Scope) -> Decimal:
        """What calls in flight in this process hold on a scope's budget."""
        with self._lock:
            return self._reserved.get(scope, ZERO)

    def _spent(self, scope: Scope, *, with_reserved: bool) -> Decimal:
        recorded = self._recorded_sum.get((self.period, scope), ZERO)
        reserved = self._reserved.get(scope, ZERO) if with_reserved else ZERO
        return self._ledger.get(scope, ZERO) + recorded + reserved

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
        scopes = self.scopes(call.payer.department, call.payer.team, call.key.id)
        if not scopes:
            return ZERO
        estimate = max(call.reserved or ZERO, self.estimate(call))
        with self._lock:
            over = next((s for s in scopes if self._spent(s, with_reserved=True) >= self._cap(s)), None)
            if over is None:
                for s in scopes:
                    self._reserved[s] = self._reserved.get(s, ZERO) + estimate
                self._reservations[call.call_id] = (scopes, estimate, time.monotonic())
                return estimate
            spent = self._spent(over, with_reserved=True)
        error = BudgetExceeded(over[0], over[1], usd(self.limits[over], 2), usd(spent, 2))
        self._alert("budget_hard", over, spent)
        raise error

    def _cap(self, scope: Scope) -> Decimal:
        """The budget, or this replica's lease on it when that is lower."""
        limit = self.limits[scope]
        ceiling = self._ceiling.get(scope)
        return limit if ceiling is None else min(limit, ceiling)

    def settle(self, event: dict[str, Any], call: Any = None) -> None:
        """Meter observer: a recorded call replaces its reservation with its actual cost."""
        if not self.limits:
            return
        cost = from_pico(event["cost_pico"])
        scopes = self.scopes(event["department"], event["team"], event["key_id"])
        with self._lock:
            held = self._reservations.pop(event["call_id"], None)
            if held is not None:
                for s in held[0]:
                    self._reserved[s] = self._reserved.get(s, ZERO) - held[1]
            if event["status"] != "rejected":
                self._learn(event, cost)
            if not (cost and scopes):
                return
            self._forget(event["call_id"])
            period = period_of(event["ts"])
            self._recorded[event["call_id"]] = (period, scopes, cost)
            for s in scopes:
                self._recorded_sum[(period, s)] = self._recorded_sum.get((period, s), ZERO) + cost
            crossed = [(s, self._spent(s, with_reserved=False)) for s in scopes]
        for s, spent in crossed:
            if spent * 100 >= self.limits[s] * self.cfg.soft_threshold_percent:
                self._alert("budget_soft", s, spent)

    def follow(self, writer: LedgerWriter) -> None:
        """Learn from the writer of this process's spool which recorded calls reached the
        ledger, instead of asking the ledger at each refresh. Before any call is recorded."""
        with self._lock:
            self._landed = set()
        writer.on_written.append(self._on_written)

    def _on_written(self, call_ids: list[str]) -> None:
        with self._lock:
            if self._landed is not None:
                self._landed.update(call_ids)

    def _take_landed(self) -> set[str] | None:
        with self._lock:
            landed, self._landed = self._landed, (set() if self._landed is not None else None)
        return landed

    def _forget(self, call_id: str) -> None:
        held = self._recorded.pop(call_id, None)
        if held is not None:
            period, scopes, cost = held
            for s in scopes:
                left = self._recorded_sum[(period, s)] - cost
                if left:
                    self._recorded_sum[(period, s)] = left
                else:
                    del self._recorded_sum[(period, s)]

    def estimate(self, call: Admissible) -> Decimal:
        """A conservative guess of the call's cost, made before it is sent."""
        if call.kind in ("llm", "embedding"):
            upstream = getattr(call, "upstream_model", "")  # the bundled map knows the provider's name
            price = self.prices.lookup(call.model, *([upstream] if upstream else []), at=call.ts)
            if price is None:
                return ZERO  # unpriced calls are recorded at 0
            recent = self._outputs.get(call.model)
            output = max(recent) if recent else (self.cfg.default_output_tokens if call.kind == "llm" else 0)
            cap = getattr(call, "max_output_tokens", 0)  # the request's max_tokens: output cannot pass it
            if cap:
                output = min(output, cap)
            return (call.request_bytes // BYTES_PER_TOKEN) * price.input + output * price.output
        recent_costs = self._costs.get((call.kind, call.provider, call.tool))
        return max(recent_costs) if recent_costs else ZERO

    def _learn(self, event: dict[str, Any], cost: Decimal) -> None:
        if event["kind"] in ("llm", "embedding"):
            if event["usage_source"] == "reported" and event["status"] == "ok":
                self._outputs.setdefault(event["model"], deque(maxlen=RECENT)).append(event["output_tokens"])
        else:
            k = (event["kind"], event["provider"], event["tool"])
            if k in self._costs or len(self._costs) < MAX_TOOLS:  # tool names are the client's: bounded
                self._costs.setdefault(k, deque(maxlen=RECENT)).append(cost)

    def _alert(self, kind: str, scope: Scope, spent: Decimal) -> None:
        key = (kind, scope, self.period)
        if key in self._alerted:
            return
        self._alerted.add(key)
        self._alerts.put(Alert(kind, scope, self.period, self.limits[scope], spent))

    # -- the background thread ---------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.wait(self.cfg.refresh_seconds):
            try:
                self.refresh()
            except sa.exc.SQLAlchemyError as e:
                log.warning("budget spend not refreshed (ledger unavailable): %s", str(e).splitlines()[0])
            self._send_alerts()

    def refresh(self) -> None:
        """Re-read the month's spend per scope from the ledger."""
        period = period_of(self.now())
        if not self.limits:
            with self._lock:
                self.period = period
            return  # nothing to read, and no lease to take
        with self.engine.begin() as conn:
            lock_leases(conn)  # the ledger must be read under it for leases to add up
            # Which of our recorded calls the ledger has, known before the sums are read: a call
            # written in between is counted twice until the next refresh, never missed. The
            # writer says what it committed; without one, the ledger is asked (a query per 500
            # calls, under the lock that also holds up the writer on SQLite).
            landed = self._take_landed()
            if landed is None:
                with self._lock:
                    pending = list(self._recorded)
                landed = self._in_ledger(conn, pending)
            spend = self._ledger_spend(conn, period)
            mine, crossed = self._reread(period, spend, landed)
            committed = renew(
                conn, replica=self.replica, period=period, limits=self.limits, ledger=spend, pending=mine,
                now=self.now(), ttl=self.lease_ttl,
            )  # fmt: skip
        with self._lock:
            if self.period == period:
                self._ceiling = {s: spend.get(s, ZERO) + c for s, c in committed.items()}
        for s, spent in crossed:
            if spent * 100 >= self.limits[s] * self.cfg.soft_threshold_percent:
                self._alert("budget_soft", s, spent)

    def _reread(
        self, period: str, spend: dict[Scope, Decimal], landed: set[str]
    ) -> tuple[dict[Scope, Decimal], list[tuple[Scope, Decimal]]]:
        """Take in a fresh read of the ledger; (our spend beyond it, scopes' spend for alerts)."""
        cutoff = time.monotonic() - RESERVATION_MAX_AGE
        with self._lock:
            if period != self.period:
                self._alerted.clear()
            self.period = period
            self._ledger = spend
            for cid in landed:
                self._forget(cid)
            for cid, (p, _, _) in list(self._recorded.items()):
                if p != period:
                    self._forget(cid)
            for cid, (scopes, amount, t0) in list(self._reservations.items()):
                if t0 < cutoff:
                    del self._reservations[cid]
                    for s in scopes:
                        self._reserved[s] = self._reserved.get(s, ZERO) - amount
            crossed = [(s, self._spent(s, with_reserved=False)) for s in self.limits]
            mine = {s: self._spent(s, with_reserved=True) - spend.get(s, ZERO) for s in self.limits}
        return mine, crossed

    def _in_ledger(self, conn: sa.Connection, call_ids: list[str]) -> set[str]:
        t = Event.__table__
        found: set[str] = set()
        for i in range(0, len(call_ids), 500):
            chunk = call_ids[i : i + 500]
            found.update(r[0] for r in conn.execute(sa.select(t.c.call_id).where(t.c.call_id.in_(chunk))))
        return found

    def _ledger_spend(self, conn: sa.Connection, period: str) -> dict[Scope, Decimal]:
        r, e = Rollup.__table__, Event.__table__
        spend: dict[Scope, Decimal] = {}
        wanted = {kind: [i for k, i in self.limits if k == kind] for kind in ("department", "team", "key")}
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

    def _send_alerts(self) -> None:
        while True:
            try:
                alert = self._alerts.get_nowait()
            except queue.Empty:
                return
            try:
                if self._note(alert):
                    self._announce(alert)
            except sa.exc.SQLAlchemyError as e:
                log.warning("budget alert not stored (ledger unavailable): %s", str(e).splitlines()[0])

    def _note(self, a: Alert) -> bool:
        """Store the alert once per scope and month; True if this process stored it."""
        t = Note.__table__
        what = "reached its soft threshold" if a.kind == "budget_soft" else "is over its budget; calls are refused"
        message = f"{a.scope[0]} {a.scope[1]!r} {what}: {usd(a.spent, 2)} of {usd(a.budget, 2)} USD in {a.period}"
        stmt = (
            dialect_insert(self.engine, t)
            .values(ts=self.now(), kind=a.kind, subject=f"{a.scope[0]}:{a.scope[1]}", period=a.period, message=message)
            .on_conflict_do_nothing(index_elements=["kind", "subject", "period"])
            .returning(t.c.id)
        )
        with self.engine.begin() as conn:
            inserted = conn.execute(stmt).first() is not None
        if inserted:
            log.warning("budget alert: %s", message)
        return inserted

    def _announce(self, a: Alert) -> None:
        if not self.cfg.webhook_url:
            return
        body = {
            "kind": a.kind,
            "scope": a.scope[0],
            "id": a.scope[1],
            "period": a.period,
            "budget_usd": str(a.budget),
            "spent_usd": str(a.spent),
            "threshold_percent": str(self.cfg.soft_threshold_percent),
        }
        import httpx  # here: with its CLI's Rich and Pygments it costs the proxy ~5 MB resident

        try:
            httpx.post(self.cfg.webhook_url, json=body, timeout=5.0).raise_for_status()
        except httpx.HTTPError as e:
            log.warning("budget webhook %s failed: %s", self.cfg.webhook_url, e)


__all__ = ["Admissible", "Alert", "Budgets", "configured_limits"]
