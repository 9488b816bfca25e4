"""A team budget holds across two replicas under concurrent load (costing/budget_leases.py)."""

from __future__ import annotations

import threading
from decimal import Decimal

import openai
import sqlalchemy as sa

from tests.replicas.fleet import WAIT, wait_for

BUDGET = Decimal("0.002")  # about 180 calls at the simulator's usage and gpt-4o-mini's price


def test_two_replicas_under_load_keep_a_team_within_its_budget_together(start_replica, ledger):
    departments = [{"id": "research", "teams": [{"id": "nlp", "budget_usd_monthly": str(BUDGET)}]}]
    fast = {"refresh_seconds": 0.2}
    a = start_replica("a", departments=departments, budgets=fast)
    b = start_replica("b", departments=departments, budgets=fast)
    _, key = a.create_key()
    refused: list[str] = []
    admitted: list[str] = []
    largest = [Decimal(0)]
    lock = threading.Lock()

    def work(replica) -> None:
        client = replica.client(key)
        while True:
            try:
                raw = client.chat.completions.with_raw_response.create(
                    model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
                )
            except openai.AuthenticationError:
                continue  # the key is not on this replica yet
            except openai.RateLimitError as e:
                with lock:
                    refused.append(e.body["code"])
                    if len(refused) >= 40:
                        return
                continue
            raw.parse()
            with lock:
                if len(admitted) > 5000:  # far past the budget: the test fails below, not hangs
                    return
                admitted.append(raw.headers["x-meterline-call-id"])
                largest[0] = max(largest[0], Decimal(raw.headers["x-meterline-cost-usd"]))

    threads = [threading.Thread(target=work, args=(r,), daemon=True) for r in (a, b) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=WAIT * 3)

    def spent() -> Decimal:
        with ledger.connect() as conn:
            pico = conn.execute(sa.text("SELECT coalesce(sum(cost_pico), 0) FROM events WHERE team = 'nlp'")).scalar()
        return Decimal(pico) * Decimal("1e-12")

    wait_for("every admitted call in the ledger", lambda: _landed(ledger, admitted))
    assert set(refused) == {"budget_exceeded"}
    # The bound: the budget, plus at most one call per replica admitted while under its share
    # (estimates here are never below the actual cost).
    assert spent() <= BUDGET + 2 * largest[0]
    assert spent() > BUDGET / 2  # and the budget was not refused away


def _landed(ledger, call_ids: list[str]) -> bool:
    with ledger.connect() as conn:
        have = {r[0] for r in conn.execute(sa.text("SELECT call_id FROM events"))}
    return set(call_ids) <= have
