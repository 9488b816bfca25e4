"""The budget accountant on its own: admission, settlement, ledger reads handed in, leases and
alerts, all in memory (no database anywhere in this file)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterline.costing import BudgetExceeded, PriceBook, settings_from_dict
from meterline.costing.budget_accountant import Accountant, configured_limits
from meterline.costing.budget_estimates import RECENT, Estimator
from tests.costing.test_budgets import NOW, FakeCall, _recorded

TEAM = ("team", "nlp")
KEY = ("key", "key_1")
PERIOD = "2026-11"
# 400 request bytes = 100 input tokens, and 1,000 output tokens before any call was seen.
ESTIMATE = 100 * Decimal("0.15") / 10**6 + 1000 * Decimal("0.60") / 10**6


def accountant(team_budget: str = "1", soft: int = 50, **budgets) -> Accountant:
    settings = settings_from_dict(
        {
            "departments": [{"id": "research", "teams": [{"id": "nlp", "budget_usd_monthly": team_budget}]}],
            "prices": [{"model": "gpt-4o-mini", "input_per_mtok": "0.15", "output_per_mtok": "0.60"}],
            "budgets": {"soft_threshold_percent": soft, **budgets},
        },
        environ={},
    )
    estimator = Estimator(PriceBook(settings.prices, bundled={}), settings.budgets.default_output_tokens)
    return Accountant(configured_limits(settings), estimator, settings.budgets.soft_threshold_percent, PERIOD)


def test_only_the_scopes_with_a_budget_are_charged():
    a = accountant(keys={"key_1": "5"})
    assert a.scopes("research", "nlp", "key_1") == (TEAM, KEY)
    assert a.scopes("research", "other", "key_2") == ()
    call = FakeCall("free", payer=SimpleNamespace(department="ops", team="infra"), key=SimpleNamespace(id="key_2"))
    assert a.admit(call) == 0 and a.reserved(TEAM) == 0 and a.alerts() == []


def test_an_admitted_call_reserves_its_estimate_until_settled_at_its_actual_cost():
    a = accountant()
    call = FakeCall("c1")
    assert a.admit(call) == ESTIMATE
    assert a.reserved(TEAM) == ESTIMATE and a.spent(TEAM) == ESTIMATE

    a.settle(_recorded("c1", "0.1"), call)
    assert a.reserved(TEAM) == 0
    assert a.spent(TEAM) == Decimal("0.1")
    assert a.pending() == ["c1"]


def test_a_price_known_beforehand_is_reserved_when_larger_than_the_estimate():
    a = accountant()
    assert a.admit(FakeCall("mcp", reserved=Decimal("0.3"))) == Decimal("0.3") == a.reserved(TEAM)


def test_a_call_is_refused_once_spend_reaches_the_budget_and_the_refusal_is_alerted_once():
    a = accountant(team_budget="0.2")
    a.settle(_recorded("a", "0.2"))
    for i in range(2):
        with pytest.raises(BudgetExceeded, match="team 'nlp' is over its monthly budget of 0.20 USD"):
            a.admit(FakeCall(f"r{i}"))  # only an answer: the caller records the refusal
        assert a.reserved(TEAM) == 0
    kinds = [(x.kind, x.scope, x.period) for x in a.alerts()]
    assert kinds == [("budget_soft", TEAM, PERIOD), ("budget_hard", TEAM, PERIOD)]
    assert a.alerts() == []  # drained


def test_parallel_calls_at_the_edge_are_refused_as_their_reservations_fill_the_budget():
    a = accountant(team_budget=str(ESTIMATE * 2))
    a.admit(FakeCall("p1"))
    a.admit(FakeCall("p2"))
    with pytest.raises(BudgetExceeded):
        a.admit(FakeCall("p3"))


def test_a_ledger_read_replaces_what_it_includes_and_keeps_what_it_does_not():
    a = accountant()
    a.settle(_recorded("in", "0.1"))
    a.settle(_recorded("out", "0.05"))
    flying = a.admit(FakeCall("flying"))
    mine, crossed = a.reread(PERIOD, {TEAM: Decimal("0.4")}, landed={"in"})
    # The ledger has 0.4 (with "in"); "out" and the reservation are still counted from memory.
    assert a.spent(TEAM) == Decimal("0.4") + Decimal("0.05") + flying
    assert mine == {TEAM: Decimal("0.05") + flying}
    assert crossed == [(TEAM, Decimal("0.45"))]
    assert a.pending() == ["out"]


def test_a_new_month_starts_from_its_own_ledger_read_and_may_alert_again():
    a = accountant(team_budget="0.2")
    a.settle(_recorded("nov", "0.2"))
    with pytest.raises(BudgetExceeded):
        a.admit(FakeCall("late"))
    assert len(a.alerts()) == 2

    a.reread("2026-12", {}, landed=set())
    assert a.period == "2026-12" and a.spent(TEAM) == 0 and a.pending() == []
    call = FakeCall("dec")
    assert a.admit(call) == a.estimate(call) > 0
    a.reread("2026-12", {TEAM: Decimal("0.2")}, landed=set())
    a.check_soft([(TEAM, Decimal("0.2"))])
    assert [(x.kind, x.period) for x in a.alerts()] == [("budget_soft", "2026-12")]


def test_a_lease_below_the_budget_caps_admission_for_its_month_only():
    a = accountant()
    a.set_ceilings(PERIOD, {TEAM: Decimal("0.1")}, {TEAM: Decimal("0")})
    assert a.cap(TEAM) == Decimal("0.1")
    a.settle(_recorded("c", "0.1"))
    with pytest.raises(BudgetExceeded):
        a.admit(FakeCall("over-lease"))
    a.set_ceilings("2026-10", {}, {TEAM: Decimal("5")})  # a read of another month: ignored
    assert a.cap(TEAM) == Decimal("0.1")
    a.set_ceilings(PERIOD, {TEAM: Decimal("0.1")}, {TEAM: Decimal("5")})  # above the budget
    assert a.cap(TEAM) == Decimal("1")


def test_caps_and_scopes_follow_a_new_allowance_and_a_key_budget_given_or_taken():
    # Both are worked out once per change of what they derive from: a change must show at once.
    a = accountant(team_budget="0.1")
    a.settle(_recorded("spent", "0.1"))
    with pytest.raises(BudgetExceeded):
        a.admit(FakeCall("over"))
    a.allowance = {TEAM: Decimal("1")}  # credits to draw beyond the budget, replaced as credits do
    assert a.cap(TEAM) == Decimal("1.1")
    assert a.admit(FakeCall("on-credit")) == a.reserved(TEAM) > 0
    assert a.scopes("research", "nlp", "key_9") == (TEAM,)
    a.key_budget("key_9", Decimal("5"))
    assert a.scopes("research", "nlp", "key_9") == (TEAM, ("key", "key_9"))
    a.key_budget("key_9", None)
    assert a.scopes("research", "nlp", "key_9") == (TEAM,)


def test_estimates_learn_from_reported_outputs_and_not_from_refusals():
    a = accountant()
    a.settle(_recorded("s", "0.000001") | {"output_tokens": 20})
    a.settle(_recorded("refused", "0") | {"output_tokens": 5000, "status": "rejected"})
    assert a.estimate(FakeCall("e", request_bytes=40)) == 10 * Decimal("0.15") / 10**6 + 20 * Decimal("0.60") / 10**6


def test_a_call_told_by_budgets_and_credits_alike_is_learned_once():
    """Both settle each recorded call: the last RECENT calls must be RECENT calls, not half."""
    a = accountant()

    def settle_both(event):
        a.estimator.learn(event, Decimal(event["cost_pico"]) / 10**12)  # the credits' settle
        a.settle(event)  # the budgets'

    settle_both(_recorded("big", "0.000001") | {"output_tokens": 900})
    for i in range(RECENT - 1):
        settle_both(_recorded(f"small-{i}", "0.000001") | {"output_tokens": 20})
    assert a.estimator.output_tokens(FakeCall("e")) == 900  # still one of the last RECENT
    settle_both(_recorded("one-more", "0.000001") | {"output_tokens": 20})
    assert a.estimator.output_tokens(FakeCall("e")) == 20


def test_an_alert_says_what_happened_as_a_value():
    a = accountant(soft=50)
    a.settle(_recorded("half", "0.5"))
    (alert,) = a.alerts()
    assert alert.message == "team 'nlp' reached its soft threshold: 0.50 of 1.00 USD in 2026-11"
    assert (alert.subject, alert.budget, alert.spent, alert.threshold_percent) == ("team:nlp", 1, Decimal("0.5"), 50)


def test_a_key_issued_with_a_budget_of_its_own_is_held_to_it_unless_the_config_sets_one():
    a = accountant(keys={"key_1": "5"})
    own = SimpleNamespace(id="key_2", budget_usd=Decimal("0"))
    with pytest.raises(BudgetExceeded, match="key 'key_2'"):
        a.admit(FakeCall("k2", key=own))
    assert a.limits[("key", "key_2")] == 0
    a.key_budget("key_1", Decimal("0"))  # the config's budget for key_1 wins
    assert a.limits[KEY] == 5
    a.key_budget("key_2", None)
    assert ("key", "key_2") not in a.limits


def test_with_no_budget_at_all_calls_are_neither_reserved_nor_recorded():
    a = Accountant({}, accountant().estimator, Decimal(80), PERIOD)
    assert a.admit(FakeCall("c")) == 0
    a.settle(_recorded("c", "1"))
    assert a.pending() == [] and a.spent(TEAM) == 0


# A replica's life as steps: a call recorded (id, cost in micro-dollars, month), some recorded
# calls landing in the ledger, a ledger read of the month counted or of the next.
MONTHS = {"2026-10": datetime(2026, 10, 31, 23, tzinfo=UTC), PERIOD: NOW, "2026-12": datetime(2026, 12, 1, tzinfo=UTC)}
STEP = st.one_of(
    st.tuples(st.just("record"), st.integers(0, 12), st.integers(1, 10**6), st.sampled_from(sorted(MONTHS))),
    st.tuples(st.just("land"), st.sets(st.integers(0, 12))),
    st.tuples(st.just("read"), st.booleans()),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(STEP, max_size=40))
def test_spend_is_the_last_read_plus_the_recorded_calls_it_lacked_through_any_interleaving(steps):
    """Admission reads running sums that settle adds to and each ledger read adjusts (or, when
    a month ends, builds anew): after every step they equal the sum worked out from scratch."""
    a = accountant(team_budget="1000000")
    ledger: dict[str, dict[str, Decimal]] = {}  # month -> call -> cost: what the ledger holds
    unlanded: dict[str, tuple[str, Decimal]] = {}  # recorded, not in the ledger yet
    known: dict[str, tuple[str, Decimal]] = {}  # recorded, not yet known to have landed
    last_read = Decimal(0)
    for op, *args in steps:
        if op == "record":
            n, micros, month = args
            cid, cost = f"c{n}", Decimal(micros) / 10**6
            if any(cid in calls for calls in ledger.values()):
                continue  # a call lands once
            a.settle(_recorded(cid, cost, MONTHS[month]))
            unlanded[cid] = known[cid] = (month, cost)  # recorded twice: the last record, once
        elif op == "land":
            for cid in [f"c{n}" for n in args[0] if f"c{n}" in unlanded]:
                month, cost = unlanded.pop(cid)
                ledger.setdefault(month, {})[cid] = cost
        else:
            period = "2026-12" if args[0] else a.period
            landed = {cid for calls in ledger.values() for cid in calls}
            last_read = sum(ledger.get(period, {}).values(), Decimal(0))
            a.reread(period, {TEAM: last_read} if last_read else {}, landed)
            known = {cid: (m, c) for cid, (m, c) in known.items() if cid not in landed and m == period}
        beyond = sum((c for m, c in known.values() if m == a.period), Decimal(0))
        assert a.spent(TEAM) == last_read + beyond
        assert sorted(a.pending()) == sorted(known)  # another month's until the next read
