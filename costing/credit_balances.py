"""Credit balances in a running proxy: the refresh thread, the leases, and what budgets allow.

Every `budgets.refresh_seconds` a thread re-derives the draw-down from the ledger (credits.py,
credit_ledger.py) under the fleet's lease lock, hands it to the accountant
(credit_accountant.py) and renews this replica's lease on each pool that a `require_credits`
team or department draws from (budget_leases.py, the budgets' scheme: what the fleet can
overdraw a pool by is bounded by the calls in flight, see docs/budgets.md). A new month's
instance of a recurring grant, with its rollover, is seen from the first refresh after the
month turns (the clock is `now`, the same seam as the budgets').

Budgets compose with credits by counting what is billed: a budgeted team or department may
spend its budget plus the credits it drew this month plus the balance its pools have left
(`Budgets.accountant.allowance`), so credits are drawn first and the budget limits what is
billed beyond them.

Alerts: a team or department's `credit_alerts_usd` thresholds, checked at each refresh
(credit_alerts.py): a note, a log line and `on_alert` (the proxy's webhook).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import sqlalchemy as sa

from . import credit_alerts
from .budget_accountant import Scope as BudgetScope
from .budget_estimates import Estimator
from .budget_leases import lock as lock_leases
from .budget_leases import renew
from .config import Settings
from .credit_accountant import CreditAccountant, lease_scope
from .credit_alerts import CreditAlert
from .credit_ledger import all_grants, drawdown
from .credits import Drawdown, Scope
from .ingest import LedgerWriter
from .money import from_pico
from .months import period_of
from .refresh_loop import RefreshLoop

log = logging.getLogger("meterline.credits")


def required_scopes(settings: Settings) -> list[Scope]:
    out: list[Scope] = []
    for d in settings.departments:
        if d.require_credits:
            out.append(("department", d.id))
        out.extend(("team", t.id) for t in d.teams if t.require_credits)
    return out


class Credits:
    """Parameters:
    engine: the ledger.
    settings: `credits:`, `require_credits` on teams and departments, `budgets.refresh_seconds`.
    estimator: the budgets' estimator (a call's cost before it is sent).
    replica: this process's lease name (budget_leases.replica_id).
    now: the clock (UTC), replaceable in tests and the demo.
    """

    def __init__(
        self,
        engine: sa.Engine,
        settings: Settings,
        estimator: Estimator,
        *,
        replica: str,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_alert: Callable[[CreditAlert], None] | None = None,
    ):
        self.engine = engine
        self.settings = settings
        self.now = now
        self.replica = replica
        self.refresh_seconds = settings.budgets.refresh_seconds
        self.lease_ttl = timedelta(seconds=max(30.0, 10 * self.refresh_seconds))
        team_department = {t.id: d.id for d in settings.departments for t in d.teams}
        self.accountant = CreditAccountant(required_scopes(settings), team_department, estimator)
        self.admit = self.accountant.admit
        self.settle = self.accountant.settle
        self.last: Drawdown | None = None
        self.on_alert = on_alert
        # Only entitlements, budgets (their allowance) and alerts need balances in the proxy.
        self.needed = bool(self.accountant.required) or any(
            d.budget_usd_monthly is not None or d.credit_alerts_usd
            or any(t.budget_usd_monthly is not None or t.credit_alerts_usd for t in d.teams)
            for d in settings.departments
        )  # fmt: skip
        self.on_refresh: list[Callable[[Drawdown, datetime], None]] = []  # budgets' allowance, alerts
        self._loop = RefreshLoop("meterline-credits", "credit balances", self.refresh, self.refresh_seconds, log=log)

    def follow(self, writer: LedgerWriter) -> None:
        self.accountant.landings.follow(writer)

    def start(self) -> None:
        self._loop.start()

    def stop(self) -> None:
        self._loop.stop()

    def refresh(self) -> None:
        """Re-derive the draw-down from the ledger and renew this replica's pool leases."""
        now = self.now()
        a = self.accountant
        if not self.needed:
            return  # nothing is admitted, allowed or alerted on credits: readers derive them themselves
        if not self.settings.credits and not a.required:
            with self.engine.connect() as conn:  # grants made through the admin API only
                if conn.execute(sa.text("SELECT 1 FROM credit_grants LIMIT 1")).first() is None:
                    return
        with self.engine.begin() as conn:
            lock_leases(conn)  # the ledger must be read under it for leases to add up
            landed = a.landings.resolve(conn, a.pending)
            grants = all_grants(conn, self.settings)
            d = drawdown(conn, grants, now + timedelta(microseconds=1))  # calls recorded at `now` included
            balance, mine = a.reread(d, landed, now)
            if balance:
                committed = renew(
                    conn, replica=self.replica, period=period_of(now),
                    limits={lease_scope(p): from_pico(b) for p, b in balance.items()},
                    ledger={}, pending={lease_scope(p): from_pico(m) for p, m in mine.items()},
                    now=now, ttl=self.lease_ttl,
                )  # fmt: skip
                a.set_ceilings({p: int(committed[lease_scope(p)] * 10**12) for p in balance}, balance)
        self.last = d
        for observer in self.on_refresh:
            observer(d, now)
        self._alert(d, now)

    def _alert(self, d: Drawdown, now: datetime) -> None:
        """Note, log and announce each credit alert newly due (once per threshold and month)."""
        for alert in credit_alerts.due(self.settings, d, now, period_of(now)):
            if credit_alerts.store(self.engine, alert, now):
                log.warning("credit alert: %s", alert.message)
                if self.on_alert is not None:
                    self.on_alert(alert)


def budget_allowance(settings: Settings, d: Drawdown, now: datetime) -> dict[BudgetScope, Decimal]:
    """What each budgeted team and department may spend beyond its budget: the credits it drew
    this month and what its pools have left now."""
    period = period_of(now)
    out: dict[BudgetScope, Decimal] = {}
    for dept in settings.departments:
        teams = [t.id for t in dept.teams]
        for t in dept.teams:
            if t.budget_usd_monthly is None:
                continue
            drawn = sum(p for (m, _, team), p in d.by_period.items() if m == period and team == t.id)
            left = d.balance([("team", t.id), ("department", dept.id)], now)
            if drawn or left:
                out[("team", t.id)] = from_pico(drawn + left)
        if dept.budget_usd_monthly is not None:
            drawn = sum(p for (m, dep, _), p in d.by_period.items() if m == period and dep == dept.id)
            left = d.balance([("department", dept.id), *(("team", t) for t in teams)], now)
            if drawn or left:
                out[("department", dept.id)] = from_pico(drawn + left)
    return out


__all__ = ["Credits", "budget_allowance", "required_scopes"]
