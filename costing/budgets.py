"""Monthly budgets on departments, teams and keys: an alert at a soft threshold, a hard limit.

A call is checked before anything reaches an upstream, without a query per request: the
accountant (budget_accountant.py) admits and settles calls in memory against the month's
spend as the ledger had it at the last read, which a thread re-reads every
`budgets.refresh_seconds`. A refused call raises BudgetExceeded; the proxy route that asked
records it (status `rejected`).

The bound this gives, per process: a scope's month can pass its budget by less than the
actual cost of the last call admitted plus the amount by which the calls in flight at that
moment exceed their estimates (budget_estimates.py); so at most the cost of the calls in
flight, and less than one call's cost when estimates are not below actual costs. Parallel
calls at the edge are refused as soon as their reservations fill what is left. Several
replicas on one database hold the same bound together, added over the replicas: each re-reads
the ledger under a fleet-wide lock and takes a lease on part of what is left, which caps its
own spend beyond the ledger (budget_leases.py: how, and what it costs near the edge).

Soft alerts fire once per scope and month, fleet-wide: the first process to insert the
`budget_soft` note logs it and hands it to `on_alert` (the proxy's webhook, proxy/alerts.py),
from the background thread. The first refusal per scope and month leaves a `budget_hard` note
the same way.

    Budgets                the lifecycle: start, the refresh thread, stop
    ├── Accountant         admission, settlement, alerts as values (budget_accountant.py)
    │   └── Estimator      a call's cost before it is sent (budget_estimates.py)
    ├── ledger reads       spend per scope, calls already in (budget_ledger.py)
    ├── leases             the fleet's share of each budget (budget_leases.py)
    └── alert notes        once per scope and month (budget_alerts.py)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import sqlalchemy as sa

from . import budget_alerts
from .budget_accountant import Accountant, Scope, configured_limits
from .budget_alerts import Alert, Announce
from .budget_estimates import Admissible, Estimator
from .budget_leases import lock as lock_leases
from .budget_leases import renew, replica_id
from .budget_ledger import ledger_spend
from .config import Settings
from .ingest import LedgerWriter
from .months import period_of
from .prices import PriceBook
from .refresh_loop import RefreshLoop

log = logging.getLogger("meterline.budgets")


class Budgets:
    """Parameters:
    engine: the ledger.
    settings: departments/teams (`budget_usd_monthly`) and `budgets:` (keys, soft threshold,
        refresh interval, default output tokens).
    prices: the price book the proxy prices calls with (for estimates).
    now: the clock (UTC), replaceable in tests.
    on_alert: told each alert this process noted first, from the background thread (the
        proxy posts `budgets.webhook_url`); None: alerts are noted and logged only.
    """

    # The request path is the accountant's, bound per instance in __init__ so that a call
    # costs no extra frame on its way there.
    admit: Callable[[Admissible], Decimal]
    settle: Callable[..., None]
    spent: Callable[[Scope], Decimal]
    reserved: Callable[[Scope], Decimal]
    scopes: Callable[[str, str, str], tuple[Scope, ...]]
    estimate: Callable[[Admissible], Decimal]
    key_budget: Callable[[str, Decimal | None], None]

    def __init__(
        self,
        engine: sa.Engine,
        settings: Settings,
        prices: PriceBook,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_alert: Announce | None = None,
    ):
        self.engine = engine
        self.cfg = settings.budgets
        self.now = now
        self.on_alert = on_alert
        estimator = Estimator(prices, self.cfg.default_output_tokens)
        self.accountant = Accountant(configured_limits(settings), estimator, self.cfg.soft_threshold_percent, period_of(now()))
        a = self.accountant
        self.admit, self.settle, self.spent, self.reserved = a.admit, a.settle, a.spent, a.reserved
        self.scopes, self.estimate, self.key_budget = a.scopes, a.estimate, a.key_budget
        self.replica = replica_id(settings.server.spool_dir)
        self.lease_ttl = timedelta(seconds=max(30.0, 10 * self.cfg.refresh_seconds))
        self._loop = RefreshLoop(
            "meterline-budgets", "budget spend", self.refresh, self.cfg.refresh_seconds, log=log, after=self._send_alerts
        )

    @classmethod
    def from_settings(cls, engine: sa.Engine, settings: Settings, prices: PriceBook, *, on_alert: Announce | None = None) -> Budgets:
        """Budgets for the config. With none configured they cost a check per call, until a
        key with a budget of its own (`budget_usd_monthly`) makes its first call."""
        return cls(engine, settings, prices, on_alert=on_alert)

    @property
    def period(self) -> str:
        """The month being counted."""
        return self.accountant.period

    @property
    def limits(self) -> dict[Scope, Decimal]:
        """The monthly budget per scope: the config's, and keys' own (`key_budget`)."""
        return self.accountant.limits

    def start(self) -> None:
        # With the ledger down the proxy serves (calls are spooled); budgets then count only
        # what this process sees until the ledger answers again.
        self._loop.start()

    def stop(self) -> None:
        self._loop.stop()
        self._send_alerts()

    def follow(self, writer: LedgerWriter) -> None:
        """Learn from the writer of this process's spool which recorded calls reached the
        ledger, instead of asking the ledger at each refresh. Before any call is recorded."""
        self.accountant.landings.follow(writer)

    # -- what the background thread does ------------------------------------------------------

    def refresh(self) -> None:
        """Re-read the month's spend per scope from the ledger and renew this replica's leases."""
        period = period_of(self.now())
        a = self.accountant
        limits = a.limits
        if not limits:
            a.landings.discard()
            a.reread(period, {}, set())  # nothing to read, and no lease to take
            return
        with self.engine.begin() as conn:
            lock_leases(conn)  # the ledger must be read under it for leases to add up
            # Which of our recorded calls the ledger has, known before the sums are read.
            landed = a.landings.resolve(conn, a.pending)
            spend = ledger_spend(conn, limits, period)
            mine, crossed = a.reread(period, spend, landed)
            committed = renew(
                conn, replica=self.replica, period=period, limits=a.spendable(), ledger=spend, pending=mine,
                now=self.now(), ttl=self.lease_ttl,
            )  # fmt: skip
        a.set_ceilings(period, spend, committed)
        a.check_soft(crossed)

    def _send_alerts(self) -> None:
        for alert in self.accountant.alerts():
            try:
                stored = budget_alerts.store(self.engine, alert, self.now())
            except sa.exc.SQLAlchemyError as e:
                log.warning("budget alert not stored (ledger unavailable): %s", str(e).splitlines()[0])
                continue
            if stored:
                log.warning("budget alert: %s", alert.message)
                if self.on_alert is not None:
                    self.on_alert(alert)


__all__ = ["Admissible", "Alert", "Budgets", "configured_limits"]
