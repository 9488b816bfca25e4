"""Reservations: what budgets and credits hold for calls in flight, given back once each."""

from __future__ import annotations

from decimal import Decimal

from meterline.costing.reservations import MAX_AGE, Reservations

TEAM, DEPT = ("team", "nlp"), ("department", "research")


def test_a_call_holds_its_parts_until_released_once():
    now = [0.0]
    r = Reservations(Decimal(0), clock=lambda: now[0])
    r.hold("a", [(TEAM, Decimal("0.5")), (DEPT, Decimal("0.5"))])
    r.hold("b", [(TEAM, Decimal("0.25"))])
    assert (r.held(TEAM), r.held(DEPT)) == (Decimal("0.75"), Decimal("0.5"))
    assert "a" in r and "c" not in r
    r.release("a")
    r.release("a")  # a second record of the same call gives nothing back twice
    r.release("never-held")
    assert (r.held(TEAM), r.held(DEPT)) == (Decimal("0.25"), Decimal(0))
    assert "a" not in r


def test_a_call_never_recorded_gives_its_hold_back_after_max_age_and_others_keep_theirs():
    now = [100.0]
    r = Reservations(0, clock=lambda: now[0])
    r.hold("lost", [(TEAM, 7)])
    now[0] += MAX_AGE - 1
    r.hold("young", [(TEAM, 5)])
    r.expire()
    assert r.held(TEAM) == 12  # not old enough yet
    now[0] += 2
    r.expire()
    assert r.held(TEAM) == 5 and "lost" not in r and "young" in r
    r.release("young")
    assert r.held(TEAM) == 0 and r._sums == {}  # scopes no call holds leave nothing behind
