"""Budgets hold for a fleet: replicas sharing one ledger never admit more than the budget together,
give or take the one call each may admit while under its share (the single-process rule: a call
is admitted while spend is below the limit)."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest
import sqlalchemy as sa

from meterline.costing import BudgetExceeded, PriceBook, settings_from_dict
from meterline.costing.budgets import Budgets
from tests.costing.test_budgets import NOW, FakeCall
from tests.seed import event, seed

BUDGET = Decimal("0.01")
TEAM = ("team", "nlp")


@pytest.fixture
def engine(ledger_engine):
    return ledger_engine


def replica(engine, tmp_path, name: str) -> Budgets:
    settings = settings_from_dict(
        {
            "departments": [{"id": "research", "teams": [{"id": "nlp", "budget_usd_monthly": str(BUDGET)}]}],
            "prices": [{"model": "gpt-4o-mini", "input_per_mtok": "0.15", "output_per_mtok": "0.60"}],
            "server": {"spool_dir": str(tmp_path / name)},
        },
        environ={},
    )
    return Budgets(engine, settings, PriceBook(settings.prices, bundled={}), now=lambda: NOW)


class Fleet:
    """Replicas' budgets plus the calls they admitted, settled and wrote to the ledger."""

    def __init__(self, engine, replicas: list[Budgets]):
        self.engine, self.replicas = engine, replicas
        self.in_flight: list[tuple[Budgets, FakeCall]] = []
        self.unlanded: list[dict] = []
        self.settled = Decimal(0)
        self.refused = 0
        self.largest = Decimal(0)  # estimate
        self.n = 0

    def admit(self, b: Budgets, request_bytes: int) -> bool:
        self.n += 1
        call = FakeCall(f"{self.n:016x}", request_bytes=request_bytes)
        try:
            call.reserved = b.admit(call)
        except BudgetExceeded:
            self.refused += 1
            return False
        self.in_flight.append((b, call))
        self.largest = max(self.largest, call.reserved)
        return True

    def settle(self, i: int, fraction: Decimal) -> None:
        b, call = self.in_flight.pop(i)
        # What the call really cost: at most its estimate, as when estimates are not low.
        row = event(call.reserved * fraction, NOW, call_id=call.call_id)
        b.settle(row, call)
        self.settled += Decimal(row["cost_pico"]) * Decimal("1e-12")
        self.unlanded.append(row)

    def land(self, k: int) -> None:
        rows, self.unlanded = self.unlanded[:k], self.unlanded[k:]
        seed(self.engine, rows)

    def committed(self) -> Decimal:
        """What the fleet has spent or may still spend on calls already admitted."""
        return self.settled + sum((c.reserved for _, c in self.in_flight), Decimal(0))


def test_two_replicas_at_the_budget_edge_never_pass_it_by_more_than_a_call_each(engine, tmp_path):
    a, b = replica(engine, tmp_path, "a"), replica(engine, tmp_path, "b")
    fleet = Fleet(engine, [a, b])
    rng = random.Random(7)
    for r in (a, b):
        r.refresh()
    for _ in range(1500):
        step = rng.random()
        who = rng.choice([a, b])
        if step < 0.45:
            fleet.admit(who, rng.randrange(100, 3000))
        elif step < 0.75 and fleet.in_flight:
            fleet.settle(rng.randrange(len(fleet.in_flight)), Decimal(rng.randrange(20, 101)) / 100)
        elif step < 0.85 and fleet.unlanded:
            fleet.land(rng.randrange(1, len(fleet.unlanded) + 1))
        else:
            who.refresh()
        assert fleet.committed() <= BUDGET + 2 * fleet.largest  # one call over, per replica

    assert fleet.refused > 0
    with engine.connect() as conn:
        leases = conn.execute(sa.text("SELECT count(DISTINCT replica) FROM budget_leases")).scalar()
    assert leases == 2


def test_the_fleet_can_spend_nearly_all_of_a_budget_between_its_replicas(engine, tmp_path):
    a, b = replica(engine, tmp_path, "a"), replica(engine, tmp_path, "b")
    fleet = Fleet(engine, [a, b])
    refused_in_a_row = 0
    while refused_in_a_row < 6:
        for r in (a, b):
            r.refresh()
            if fleet.admit(r, 400):
                fleet.settle(len(fleet.in_flight) - 1, Decimal(1))
                fleet.land(len(fleet.unlanded))
                refused_in_a_row = 0
            else:
                refused_in_a_row += 1
    assert BUDGET - 4 * fleet.largest < fleet.committed() <= BUDGET + 2 * fleet.largest


def test_a_replica_that_stopped_renewing_releases_its_share_after_the_ttl(engine, tmp_path):
    clock = {"now": NOW}
    a, b = replica(engine, tmp_path, "a"), replica(engine, tmp_path, "b")
    for r in (a, b):
        r.now = lambda: clock["now"]
    a.refresh()  # a takes the whole budget's lease (it is alone)
    b.refresh()
    assert b.accountant.cap(TEAM) == 0
    clock["now"] = NOW + a.lease_ttl * 2  # a is gone
    b.refresh()
    assert b.accountant.cap(TEAM) == BUDGET


def test_replicas_whose_calls_cost_less_than_estimated_stay_within_a_call_each_through_renewals(engine, tmp_path):
    # Each settle frees what a call's estimate held beyond its cost (it costs 40% of it here),
    # and renewals run while calls are in flight: the pattern that let rate leases ratchet past
    # their limit, one call per renewal (test_rate_leases.py). Budgets hold here because each
    # replica also checks its own spend against the budget itself.
    a, b = replica(engine, tmp_path, "a"), replica(engine, tmp_path, "b")
    fleet = Fleet(engine, [a, b])
    for r in (a, b):
        r.refresh()
    for step in range(150):
        for r in (a, b):
            for i in reversed([i for i, (owner, _) in enumerate(fleet.in_flight) if owner is r]):
                fleet.settle(i, Decimal("0.4"))
            for _ in range(3):
                fleet.admit(r, 2000)
            r.refresh()  # while they are in flight
            assert fleet.committed() <= BUDGET + 2 * fleet.largest, step  # one call over, per replica
        if step % 5 == 4:
            fleet.land(len(fleet.unlanded))
    assert fleet.refused > 0 and fleet.committed() > BUDGET * Decimal("0.7")
