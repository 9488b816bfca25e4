"""Usage no real call has (issue 20 items 5 and 8): flagged, never priced or silently zeroed,
and never able to overflow a ledger column or a rollup, so the rest of its bucket lands."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

from meterline.costing import Org, write_events
from meterline.costing.ledger_writes import ROLLUP_MAX
from meterline.costing.money import MAX_CALL_COST, to_pico
from meterline.reports import showback
from meterline.reports.ledger_queries import events as month_events
from tests.proxy.test_chat import client
from tests.seed import event

MTOK = Decimal(1_000_000)
PRICE = {"model": "gpt-4o-mini", "input_per_mtok": "0.15", "cached_input_per_mtok": "0.075", "output_per_mtok": "600000"}


def test_forty_absurd_usages_in_one_bucket_leave_every_normal_call_in_the_ledger_and_reports(make_proxy, postgres_url):
    proxy = make_proxy(database=postgres_url, prices=[PRICE])
    c = client(proxy, proxy.key("nlp"))
    normal = []
    for i in range(40):
        # 1 huge, 2 negative, 3 float, 4 string, 5 boolean prompt tokens; 6 every count at 10^9
        c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": f"x sim:junk={i % 6 + 1}"}])
        if i % 4 == 0:
            normal.append(c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "a normal call"}]).usage)
    rows = proxy.events()
    assert len(rows) == 50
    assert not list(Path(proxy.settings.server.spool_dir).rglob("rejected"))

    junk = [r for r in rows if "invalid_usage" in r["usage_flag"]]
    fine = [r for r in rows if not r["usage_flag"]]
    assert (len(junk), len(fine)) == (40, 10)
    # A count out of range is recorded as 0 and not priced; the counts in range are kept.
    capped = [r for r in junk if r["input_tokens"] == 10**9]
    assert len(capped) == 6 and all(r["cost_pico"] == to_pico(MAX_CALL_COST) for r in capped)
    assert all(r["input_tokens"] == 0 and r["output_tokens"] == 16 for r in junk if r not in capped)
    for u, r in zip(normal, fine, strict=True):
        assert (r["input_tokens"], r["output_tokens"]) == (u.prompt_tokens, u.completion_tokens)
        assert r["cost_pico"] == to_pico((u.prompt_tokens * Decimal("0.15") + u.completion_tokens * Decimal(600000)) / MTOK)

    period = rows[0]["charge_period"]
    sb = showback(proxy.engine, Org(proxy.settings), period)
    total = sum(Decimal(r["cost_pico"]) for r in rows) / 10**12
    assert sb.requests == 50 and sb.total_usd == total
    assert len(list(month_events(proxy.engine, period))) == 50


def test_a_rollup_bucket_saturates_instead_of_overflowing(ledger_engine):
    now = datetime.now(UTC).replace(minute=1)
    huge = [event(str(MAX_CALL_COST), ts=now, call_id=f"{i:016x}") for i in range(1000)]  # $10M in one hour
    write_events(ledger_engine, huge[:500])
    write_events(ledger_engine, huge[500:])
    write_events(ledger_engine, [event("0.25", ts=now, call_id="f" * 16)])
    with ledger_engine.connect() as conn:
        n = conn.execute(sa.text("SELECT count(*) FROM events")).scalar()
        (cost,) = conn.execute(sa.text("SELECT cost_pico FROM rollups_hourly")).one()
    assert n == 1001
    assert cost == ROLLUP_MAX


@pytest.mark.parametrize("junk", [1, 2, 3, 4, 5])
def test_out_of_range_usage_is_flagged_not_free(proxy, junk):
    c = client(proxy, proxy.key())
    for _ in c.chat.completions.create(model="gpt-4o-mini", stream=True, messages=[{"role": "user", "content": f"x sim:junk={junk}"}]):
        pass
    (r,) = proxy.events()
    assert (r["usage_flag"], r["usage_source"], r["input_tokens"]) == ("invalid_usage", "reported", 0)
    assert r["output_tokens"] > 0 and r["cost_pico"] == to_pico(r["output_tokens"] * Decimal("0.60") / MTOK)
