"""FOCUS unit prices: a graduated rate card's tiers are rows of their own at their own rates,
and every usage row's unit prices times its quantity give its list and contracted cost."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest

from tests.conftest import run_cli
from tests.reports.months import hard_month


@pytest.fixture(scope="module")
def month(tmp_path_factory):
    return hard_month(tmp_path_factory.mktemp("prices"))


def _export(month, fmt):
    out = run_cli("export", "chargeback", "--month", month.period, "--format", fmt, "--config", str(month.config))
    return list(csv.DictReader(io.StringIO(out.stdout, newline="")))


def test_a_graduated_line_is_a_row_per_tier_at_the_tiers_rate(month):
    # research's card: the month's first 5 Mtok of gpt-4.1-mini at $100 per Mtok, the rest at $50;
    # team nlp's eval-harness used 9.0M input + 1.2M output tokens of it this month.
    rows = [r for r in _export(month, "focus") if r["x_Project"] == "eval-harness" and r["x_Adjustment"] == "false"]
    assert [(r["ContractedUnitPrice"], r["PricingQuantity"], r["ContractedCost"]) for r in rows] == [
        ("0.0001", "5000000.0", "500.000000"),
        ("0.00005", "5200000.0", "260.000000"),
    ]
    assert [r["SkuId"] for r in rows] == ["sim/llm/gpt-4.1-mini/tier-1", "sim/llm/gpt-4.1-mini/tier-2"]
    assert "at 100 per 1M tokens" in rows[0]["ChargeDescription"]
    # The line's list cost (the price book's 1234.5) is split by tokens; its bill by tier.
    assert sum(Decimal(r["ListCost"]) for r in rows) == Decimal("1234.5")
    line = next(
        r for r in _export(month, "csv") if r["project"] == "eval-harness" and r["adjustment"] == "false"
    )
    assert sum(Decimal(r["BilledCost"]) for r in rows) == Decimal(line["charge_usd"])
    assert Decimal(line["rated_usd"]) == Decimal("760")


def test_every_usage_row_has_unit_prices_that_give_its_costs(month):
    rows = [r for r in _export(month, "focus") if r["ChargeCategory"] == "Usage"]
    assert rows
    for r in rows:
        qty = Decimal(r["PricingQuantity"])
        for price, cost in (("ListUnitPrice", "ListCost"), ("ContractedUnitPrice", "ContractedCost")):
            assert r[price] != "", (r["ChargeDescription"], price)
            assert abs(Decimal(r[price]) * qty - Decimal(r[cost])) <= Decimal("1e-18"), (r["ChargeDescription"], price)
    # What is not usage at a price (shared costs, markup) is billed, not listed or contracted.
    billed = sum(Decimal(r["BilledCost"]) for r in rows)
    parts = sum(Decimal(r["x_UsageCost"]) + Decimal(r["x_AllocatedCost"]) + Decimal(r["x_Markup"]) for r in rows)
    assert billed == parts


def test_credit_rows_leave_unit_prices_empty(month):
    credits = [r for r in _export(month, "focus") if r["ChargeCategory"] == "Credit"]
    assert credits and all(r["ListUnitPrice"] == r["ContractedUnitPrice"] == "" for r in credits)
