"""Prices over time through the real proxy: each call priced by the version in force at its time."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import openai
import yaml

from tests.conftest import run_cli

PRICES = [
    {"model": "gpt-4o-mini", "input_per_mtok": "0.15", "output_per_mtok": "0.60", "effective_from": "2026-01-01"},
    {"model": "gpt-4o-mini", "input_per_mtok": "0.30", "output_per_mtok": "1.20", "effective_from": "2026-10-15"},
    {"model": "house-model", "input_per_mtok": "1", "output_per_mtok": "2"},
]


def test_a_mid_month_price_change_prices_each_call_by_its_own_version(make_proxy):
    p = make_proxy(prices=PRICES)
    c = openai.OpenAI(base_url=p.url + "/v1", api_key=p.key("nlp"), max_retries=0)
    costs = []
    for day in (10, 20):  # five days before and after the change
        at = datetime(2026, 10, day, 12, tzinfo=UTC)
        p.app.state.runtime.meter.clock = lambda at=at: at  # the calls happen on these days
        raw = c.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        usage = raw.parse().usage
        costs.append((Decimal(raw.headers["x-meterline-cost-usd"]), usage.prompt_tokens, usage.completion_tokens))
    before, after = p.events()

    (old_cost, pin, pout), (new_cost, _, _) = costs
    assert old_cost == (pin * Decimal("0.15") + pout * Decimal("0.60")) / 10**6
    assert new_cost == 2 * old_cost
    assert (before["price_version"], after["price_version"]) == ("config:gpt-4o-mini@2026-01-01", "config:gpt-4o-mini@2026-10-15")
    assert [Decimal(e["cost_pico"]) / 10**12 for e in (before, after)] == [old_cost, new_cost]

    cfg = str(p.config_path)
    shown = run_cli("prices", "show", "gpt-4o-mini", "--on", "2026-10-10", "--config", cfg).stdout
    (line,) = [ln for ln in shown.splitlines() if "applies on 2026-10-10" in ln]
    assert line.startswith("2026-01-01   2026-10-15") and "0.15" in line
    shown = run_cli("prices", "show", "gpt-4o-mini", "--on", "2026-10-20", "--config", cfg).stdout
    assert "2026-10-15" in next(ln for ln in shown.splitlines() if "applies on 2026-10-20" in ln)

    # The month is as priced: a dry run with the same book changes nothing.
    same = json.loads(run_cli("reprice", "--month", "2026-10", "--json", "--config", cfg).stdout)
    assert (same["changed"], Decimal(same["diff_usd"])) == (0, 0)

    # A correction: the new price was meant to apply from the 5th. The dry run shows the first
    # call would cost twice as much, and writes nothing.
    corrected = yaml.safe_load(p.config_path.read_text())
    corrected["prices"][1]["effective_from"] = "2026-10-05"
    fixed = p.config_path.with_name("corrected.yaml")
    fixed.write_text(yaml.safe_dump(corrected))
    dry = json.loads(run_cli("reprice", "--month", "2026-10", "--json", "--config", str(fixed)).stdout)
    assert dry["changed"] == 1
    assert Decimal(dry["diff_usd"]) == old_cost
    (row,) = dry["rows"]
    assert (row["department"], row["model"], row["versions"]) == (
        "research", "gpt-4o-mini", ["config:gpt-4o-mini@2026-01-01 -> config:gpt-4o-mini@2026-10-05"]
    )
    assert "Reprice 2026-10 (dry run" in run_cli("reprice", "--month", "2026-10", "--config", str(fixed)).stdout
    assert [e["cost_pico"] for e in p.events()] == [before["cost_pico"], after["cost_pico"]]

    run_cli("period", "close", "2026-10", "--config", cfg)
    refused = run_cli("reprice", "--month", "2026-10", "--config", str(fixed), check=False)
    assert refused.returncode == 1 and "2026-10 is closed" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
