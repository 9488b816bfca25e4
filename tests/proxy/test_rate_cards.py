"""Rate cards through the real proxy: a graduated tier crossed mid-month, a card dated from a
day, a commitment's shortfall line; the recorded cost never changes; reprice's dry run."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import yaml

from tests.conftest import run_cli
from tests.proxy.test_credits import ADMIN, ONE_CALL, ask, chargeback, client, settle, use_clock

TOKENS = Decimal(21) / 10**6  # Mtok of one simulator answer: 5 prompt + 16 completion tokens
CARDS = [
    {
        "department": "research", "effective_from": "2026-11-01",
        "rates": [{"model": "gpt-4o-*", "graduated": [{"up_to": "0.00005", "rate_usd": "1000"}, {"rate_usd": "500"}]}],
    },
    {"department": "research", "effective_from": "2026-11-20", "rates": [{"model": "gpt-4o-*", "flat_usd": "100"}]},
    {"department": "product", "effective_from": "2026-11-01", "commitment_usd_monthly": "1"},
]  # fmt: skip


def test_a_graduated_tier_crossed_mid_month_a_dated_card_and_a_commitment_shortfall(make_proxy, upstream, tmp_path):
    proxy = make_proxy(rate_cards=CARDS, budgets={"refresh_seconds": 60})
    clock = use_clock(proxy, datetime(2026, 11, 5, 10, tzinfo=UTC))
    nlp, web = client(proxy, proxy.key("nlp")), client(proxy, proxy.key("web"))
    ask(nlp)  # 21 tokens of the first tier's 50
    clock.now = datetime(2026, 11, 10, 15, tzinfo=UTC)
    ask(nlp)  # 42
    ask(nlp)  # crosses it: 8 tokens at 1000 USD/Mtok, 13 at 500
    clock.now = datetime(2026, 11, 21, 9, tzinfo=UTC)
    ask(nlp)  # the card of the 20th: flat
    ask(web)
    settle(proxy)
    lines = chargeback(proxy, "2026-11")
    nlp_lines = [r for r in lines if r["team"] == "nlp"]
    (line,) = nlp_lines
    rated = Decimal("0.00005") * 1000 + (3 * TOKENS - Decimal("0.00005")) * 500 + TOKENS * 100
    assert Decimal(line["rated_usd"]) == rated.quantize(Decimal("0.000001"))
    # The cost is as recorded (to the micro-dollar the largest-remainder rounding moves it by).
    assert abs(Decimal(line["cost_usd"]) - 4 * ONE_CALL) <= Decimal("0.000001")
    assert Decimal(line["charge_usd"]) == Decimal(line["rated_usd"])  # no markup or shared costs here
    assert Decimal(line["markup_usd"]) == Decimal(line["rated_usd"]) - Decimal(line["cost_usd"])
    events = proxy.events()
    assert sum(Decimal(e["cost_pico"]) for e in events if e["team"] == "nlp") / 10**12 == 4 * ONE_CALL

    (short,) = [r for r in lines if r["kind"] == "commitment"]
    web_charge = sum(Decimal(r["charge_usd"]) for r in lines if r["team"] == "web")
    assert short["department"] == "product" and Decimal(short["charge_usd"]) == Decimal(1) - web_charge
    assert sum(Decimal(r["charge_usd"]) for r in lines if r["department"] == "product") == Decimal(1)
    focus = list(csv.DictReader(io.StringIO(httpx.get(
        f"{proxy.url}/admin/exports/chargeback", params={"month": "2026-11", "format": "focus"}, headers=ADMIN
    ).text)))  # fmt: skip
    (row,) = [r for r in focus if r["x_Kind"] == "commitment"]
    assert Decimal(row["BilledCost"]) == Decimal(short["charge_usd"]) and row["ServiceName"] == "Committed AI spend"
    html = run_cli("export", "statement", "--month", "2026-11", "--department", "product", "--format", "html",
                   "--config", str(proxy.config_path)).stdout  # fmt: skip
    assert "Commitment shortfall" in html and "Total USD</td><td class=\"num\">1.00" in html

    # A dry run of another card on the same month: the ledger's usage at the new rates.
    new = tmp_path / "cards.yaml"
    new.write_text(yaml.safe_dump({"rate_cards": [{"department": "research", "rates": [{"model": "*", "flat_usd": "10"}]}]}))
    out = json.loads(run_cli("reprice", "--month", "2026-11", "--rate-cards", str(new), "--json", "--config", str(proxy.config_path)).stdout)
    research = next(r for r in out["rows"] if r["department"] == "research")
    assert Decimal(research["charge_usd"]) == Decimal(line["charge_usd"])
    assert Decimal(research["new_charge_usd"]) == (4 * TOKENS * 10).quantize(Decimal("0.000001"))
    assert chargeback(proxy, "2026-11") == lines  # nothing was written
