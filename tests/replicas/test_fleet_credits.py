"""A require_credits team's grant holds across two replicas under concurrent load: the fleet
draws past it by less than one call per replica (docs/credits.md, the overdraw bound)."""

from __future__ import annotations

import csv
import io
import threading
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import openai
import sqlalchemy as sa

from tests.conftest import ADMIN_KEY
from tests.replicas.fleet import WAIT, wait_for

GRANT = Decimal("0.002")  # about 190 calls at the simulator's usage and gpt-4o-mini's price


def test_two_replicas_under_load_overdraw_a_grant_by_less_than_one_call_each(start_replica, ledger):
    month = datetime.now(UTC).strftime("%Y-%m")
    departments = [{"id": "research", "teams": [{"id": "nlp", "require_credits": True}, {"id": "vision"}]}]
    credits = [{"id": "nlp-fleet", "team": "nlp", "amount_usd": str(GRANT), "effective_from": f"{month}-01"}]
    fast = {"refresh_seconds": 0.2}
    a = start_replica("a", departments=departments, credits=credits, budgets=fast)
    b = start_replica("b", departments=departments, credits=credits, budgets=fast)
    _, key = a.create_key()
    refused: list[str] = []
    admitted: list[str] = []
    largest = [Decimal(0)]
    total = [Decimal(0)]  # what the admitted calls cost, from their X-Meterline-Cost-USD
    seen_total: list[Decimal] = []  # the admitted calls' cost at each refusal
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
                    # Go on until the grant is used up (refusals before that are the leases'
                    # price near the edge), then 20 refusals more.
                    seen_total.append(total[0])
                    if sum(1 for t in seen_total if t >= GRANT) >= 20 or len(refused) > 5000:
                        return
                continue
            raw.parse()
            with lock:
                if len(admitted) > 5000:  # far past the grant: the test fails below, not hangs
                    return
                admitted.append(raw.headers["x-meterline-call-id"])
                cost = Decimal(raw.headers["x-meterline-cost-usd"])
                largest[0] = max(largest[0], cost)
                total[0] += cost

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
    assert set(refused) == {"credits_exhausted"}
    # The bound: the grant, plus less than one call per replica (estimates here are never
    # below the actual cost).
    overdraw = spent() - GRANT
    assert overdraw < 2 * largest[0], (overdraw, largest[0])
    print(f"grant {GRANT}, spent {spent()}, overdraw {overdraw}, largest call {largest[0]}, refusals {len(refused)}")
    assert spent() >= GRANT  # used up: refusals before it were the leases' price near the edge
    # What was drawn never passes what was granted; the overdraw is billed.
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    grant = httpx.get(f"{b.url}/admin/credits/nlp-fleet", headers=admin, timeout=30).json()
    assert Decimal(grant["drawn_usd"]) == min(GRANT, spent())
    rows = list(csv.DictReader(io.StringIO(a.cli("export", "chargeback", "--month", month).stdout)))
    credited = sum(Decimal(r["credit_usd"]) for r in rows if r["team"] == "nlp")
    billed = sum(Decimal(r["billed_usd"]) for r in rows if r["team"] == "nlp")
    assert credited == min(GRANT, spent()).quantize(Decimal("0.000001"))
    assert credited + billed == sum(Decimal(r["charge_usd"]) for r in rows if r["team"] == "nlp")


def _landed(ledger, call_ids: list[str]) -> bool:
    with ledger.connect() as conn:
        have = {r[0] for r in conn.execute(sa.text("SELECT call_id FROM events"))}
    return set(call_ids) <= have
