"""Rate-limit leases on a clock the test moves: two replicas sharing one database through
minutes and their boundaries, the sliding window counter of what they admitted checked at
every step against the limit and the stated bound (costing/rate_leases.py)."""

from __future__ import annotations

import itertools
import random
from datetime import timedelta
from types import SimpleNamespace

import pytest

from meterline.costing import settings_from_dict
from meterline.costing.errors import RateLimited
from meterline.costing.money import ZERO
from meterline.costing.prices import PriceBook
from meterline.costing.rate_leases import RateLeases
from meterline.costing.rate_limits import RateLimits

LIMIT = 100  # requests per minute
T0 = 1_800_000_000.0  # a minute's start
STEP = 0.1
REFRESH = 0.2


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t


_ids = itertools.count()


def _call(team: str = "nlp") -> SimpleNamespace:
    return SimpleNamespace(
        call_id=f"c{next(_ids)}", kind="llm", provider="sim", model="m", tool="", upstream_model="", request_bytes=40,
        max_output_tokens=10, reserved=ZERO, ts=None, payer=SimpleNamespace(team=team, department="research"),
        key=SimpleNamespace(id="key_1", limits=""),
    )  # fmt: skip


def _settle(limits: RateLimits, call: SimpleNamespace, tokens: int = 20) -> None:
    limits.settle(
        {"call_id": call.call_id, "status": "ok", "kind": "llm", "input_tokens": tokens // 2, "output_tokens": tokens - tokens // 2,
         "cost_pico": 0, "usage_source": "reported", "model": "m", "provider": "sim", "tool": ""}  # fmt: skip
    )


def _replicas(ledger_engine, **limit: int) -> tuple[Clock, list[tuple[RateLimits, RateLeases]]]:
    """Two replicas on one database and one clock, counting team nlp's `limit`."""
    settings = settings_from_dict(
        {"departments": [{"id": "research", "teams": [{"id": "nlp"}]}], "limits": [{"team": "nlp", **limit}]},
        environ={},
    )
    clock = Clock()
    replicas = []
    for name in ("r1", "r2"):
        limits = RateLimits(settings, PriceBook([]), refresh_seconds=REFRESH, clock=clock)
        replicas.append((limits, RateLeases(ledger_engine, limits, name, timedelta(seconds=30))))
    return clock, replicas


@pytest.fixture
def fleet(ledger_engine):
    return _replicas(ledger_engine, requests_per_minute=LIMIT)


def _sliding(admitted: list[float], now: float) -> float:
    """The sliding window counter of the admission times, as the limit defines it."""
    bucket = int(now // 60)
    cur = sum(1 for t in admitted if int(t // 60) == bucket)
    prev = sum(1 for t in admitted if int(t // 60) == bucket - 1)
    return prev * (1 - (now / 60 - bucket)) + cur


def test_two_replicas_hold_a_requests_limit_through_window_boundaries(fleet):
    clock, replicas = fleet
    rng = random.Random(7)
    admitted: list[float] = []
    per_minute: dict[int, int] = {}
    worst = 0.0
    for step in range(int(3 * 60 / STEP)):  # three minutes, two boundaries
        clock.t = T0 + step * STEP
        if step % int(REFRESH / STEP) == 0:
            for _, leases in rng.sample(replicas, 2):  # renewals take turns in any order
                leases.renew()
        for limits, _ in replicas:
            for _ in range(rng.randint(0, 6)):  # a load far over the limit, on both replicas
                call = _call()
                try:
                    limits.admit(call)
                except RateLimited as e:
                    assert e.kind == "requests" and e.retry_after > 0
                    continue
                admitted.append(clock.t)
                per_minute[int(clock.t // 60)] = per_minute.get(int(clock.t // 60), 0) + 1
                _settle(limits, call)
        worst = max(worst, _sliding(admitted, clock.t))
    # The bound: at most one call per replica past the limit (each one's first, before a lease).
    assert worst <= LIMIT + 2, worst
    # And the limit is used, not refused away, every minute after the first.
    minutes = sorted(per_minute)
    assert all(per_minute[m] >= LIMIT * 0.6 for m in minutes[1:]), per_minute


def test_a_window_opens_with_a_lease_taken_near_the_end_of_the_one_before(fleet):
    clock, replicas = fleet
    limits, leases = replicas[0]
    clock.t = T0 + 59.5  # within the last renewals of the minute: a share of the next is taken
    leases.renew()
    clock.t = T0 + 60.01  # the next minute, before any renewal in it
    limits.admit(_call())
    limits.admit(_call())  # a second call: admitted on the lease of the new window, not refused
    assert limits.windows()[0].lease is not None and limits.windows()[0].lease > 0


def test_a_call_refused_by_a_later_step_gives_its_reservation_back(fleet):
    clock, replicas = fleet
    limits, leases = replicas[0]
    leases.renew()
    for _ in range(LIMIT):
        call = _call()
        limits.admit(call)
        limits.settle({"call_id": call.call_id, "status": "rejected", "kind": "llm", "input_tokens": 0, "output_tokens": 0, "cost_pico": 0})
    assert limits.windows()[0].used == 0
    limits.admit(_call())  # nothing was used: still admitted



def test_replicas_at_a_token_limit_pass_it_by_less_than_a_call_each_however_many_renewals_run(ledger_engine):
    # Calls use less than their estimates (20 tokens reserved, 8 used), so each settle frees
    # room in a replica's lease. At the edge a replica's last call goes over its lease, and
    # renewals run while its calls are in flight: they must take the excess off its own lease,
    # not raise the lease to its count, or each such renewal lets it admit more past the limit.
    limit, used = 600, 8
    clock, pairs = _replicas(ledger_engine, tokens_per_minute=limit)
    replicas = [(limits, leases, []) for limits, leases in pairs]
    for _, leases, _ in replicas:
        leases.renew()
    recorded = 0
    for _ in range(300):  # 30 s of renewals within one minute, most of them at the edge
        clock.t += STEP
        for limits, leases, in_flight in replicas:
            for call in in_flight:  # the calls of the step before end
                _settle(limits, call, tokens=used)
                recorded += used
            in_flight.clear()
            for _ in range(3):  # three clients, each with a call in flight
                call = _call()
                try:
                    limits.admit(call)
                except RateLimited:
                    break
                in_flight.append(call)
            leases.renew()  # while they are in flight
    recorded += used * sum(len(in_flight) for _, _, in_flight in replicas)
    reservation = 40 // 4 + 10  # request bytes / 4, and max_tokens
    assert recorded >= limit * 0.7  # the limit was used, not refused away
    assert recorded < limit + 2 * reservation, recorded  # less than one reservation past it per replica
