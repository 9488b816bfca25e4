"""The credit accountant's lease: calls that land between the ledger read and the lease's
renewal are not counted again as room (what let two busy replicas overdraw a grant by many
calls, where the bound is one call per replica)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace

import pytest

from meterline.costing.credit_accountant import CreditAccountant
from meterline.costing.credits import Drawdown, Grant, Instance
from meterline.costing.errors import CreditsExhausted

T0 = datetime(2026, 6, 1, tzinfo=UTC)
NLP = ("team", "nlp")
RESEARCH = ("department", "research")
CALL = 100  # pico-USD, each call's estimate and cost


class FixedEstimator:
    learned = 0

    def estimate(self, call):
        return Decimal(CALL) / 10**12

    def learn(self, event, cost):
        self.learned += 1


def _read(drawn: int) -> Drawdown:
    grant = Grant("g", NLP, 1000, T0)
    return Drawdown([Instance(grant, "", T0, T0 + timedelta(days=365), fresh_pico=1000, drawn_pico=drawn)])


def _call(n: int):
    return SimpleNamespace(call_id=f"c{n}", payer=SimpleNamespace(department="research", team="nlp"),
                           ts=T0 + timedelta(hours=1), reserved=None)  # fmt: skip


def _settle(a: CreditAccountant, n: int) -> None:
    a.settle({"call_id": f"c{n}", "cost_pico": CALL, "department": "research", "team": "nlp", "ts": T0 + timedelta(hours=1),
              "status": "ok", "kind": "llm", "usage_source": "reported", "model": "m", "output_tokens": 1})  # fmt: skip


def test_a_lease_holds_while_the_calls_it_covered_land_before_it_is_renewed():
    estimator = FixedEstimator()
    a = CreditAccountant([NLP], {"nlp": "research"}, estimator)  # type: ignore[arg-type]
    at = T0 + timedelta(hours=1)
    balance, _ = a.reread(_read(0), set(), at)
    a.set_ceilings({NLP: 3 * CALL, RESEARCH: 0}, balance)  # this replica's share: three calls
    for n in range(3):
        a.admit(_call(n))
        _settle(a, n)
    with pytest.raises(CreditsExhausted):
        a.admit(_call(3))
    assert estimator.learned == 3  # the calls it admitted teach the estimate, budget or not
    # The writer commits the three calls; the next refresh reads them in the ledger and forgets
    # them as recorded, but has not renewed the lease yet: the share is still used up.
    a.reread(_read(3 * CALL), {"c0", "c1", "c2"}, at)
    with pytest.raises(CreditsExhausted):
        a.admit(_call(4))
    # Renewed: the pool's 700 left, shared with another replica, gives this one room again.
    balance, mine = a.reread(_read(3 * CALL), set(), at)
    assert balance[NLP] == 700 and mine[NLP] == 0
    a.set_ceilings({NLP: 300, RESEARCH: 0}, balance)
    for n in range(5, 8):
        a.admit(_call(n))  # 3 x 100: the share, used up
    with pytest.raises(CreditsExhausted):
        a.admit(_call(8))
