"""The FOCUS export passes the FinOps Foundation's own validator: no MUST rule fails.

The validator runs offline in an environment of its own (tests/reports/focus_validator.py).
"""

from __future__ import annotations

import csv
from decimal import Decimal

import pytest
import yaml

from tests.conftest import run_cli
from tests.reports import focus_validator
from tests.reports.months import demo_month, hard_month


@pytest.fixture(scope="session")
def validator_env():
    return focus_validator.ensure_venv()


def _export(month, out, fmt="focus"):
    run_cli(
        "export",
        "chargeback",
        "--month",
        month.period,
        "--format",
        fmt,
        "--out",
        str(out),
        "--config",
        str(month.config),
    )
    return out


def _check(report):
    assert report.total > 500 and report.passed > 100  # the bundled 1.2 rules ran
    assert report.must_failures == [], f"MUST rules failed: {report.must_failures}"


def test_the_demo_month_passes_every_must_rule(validator_env, tmp_path):
    month = demo_month(tmp_path)
    report = focus_validator.validate(_export(month, tmp_path / "demo.csv"), tmp_path)
    _check(report)
    # The three findings of issue 15 are gone, the SHOULD rule on service names included.
    for rule in (
        "BilledCost-C-005-C",
        "PricingQuantity-C-001-M",
        "ServiceName-C-008-C",
        "CostAndUsage-D-033-O",
        "CostAndUsage-D-042-O",
    ):
        assert rule not in report.failed


@pytest.mark.parametrize("fmt,suffix", [("focus", "csv"), ("focus-parquet", "parquet")])
def test_a_month_with_shared_costs_markup_adjustments_and_unpriced_calls_passes_every_must_rule(
    validator_env, tmp_path, fmt, suffix
):
    month = hard_month(tmp_path)
    report = focus_validator.validate(_export(month, tmp_path / f"hard.{suffix}", fmt), tmp_path)
    _check(report)


def test_rate_card_prices_pass_the_negotiated_pricing_rules(validator_env, tmp_path):
    # The hard month bills research by a graduated card: its tiers are rows at their own
    # contracted unit price. Declared as negotiated pricing, the validator checks
    # ContractedUnitPrice x PricingQuantity = ContractedCost on every usage row.
    month = hard_month(tmp_path)
    report = focus_validator.validate(
        _export(month, tmp_path / "cards.csv"), tmp_path, criteria=("NEGOTIATED_PRICING_SUPPORTED",)
    )
    _check(report)
    for rule in ("ContractedUnitPrice-C-006-C", "ContractedUnitPrice-C-011-C"):
        assert rule in report.checked and rule not in report.failed


def test_a_month_billed_in_euros_passes_the_price_list_unit_price_and_currency_rules(validator_env, tmp_path):
    # Prices are in USD (the price book's) and the bill in EUR: FOCUS's PricingCurrency columns
    # carry the USD side. Declared as a provider with a public price list, unit prices and
    # pricing and billing currencies that differ, the validator checks the SkuPriceId, SkuMeter,
    # SkuPriceDetails and PricingCurrency* columns too.
    month = hard_month(tmp_path)
    cfg = yaml.safe_load(month.config.read_text())
    rate = Decimal("0.92")
    cfg.setdefault("chargeback", {}).update(currency="EUR", exchange_rates={month.period: str(rate), month.previous: "0.9"})
    month.config.write_text(yaml.safe_dump(cfg))
    out = _export(month, tmp_path / "eur.csv")
    criteria = ("PUBLIC_PRICE_LIST_SUPPORTED", "UNIT_PRICING_SUPPORTED", "PRICING_BILLING_CURRENCY_DIFFERENCES_SUPPORTED")
    report = focus_validator.validate(out, tmp_path, criteria=criteria)
    _check(report)
    # (SkuPriceId-C-000-C itself is skipped: some of its parts are not machine-checkable.)
    for rule in ("SkuPriceId-C-005-C", "SkuPriceId-C-008-M", "SkuMeter-C-000-C", "SkuPriceDetails-C-000-C", "PricingCurrency-C-000-C",
                 "PricingCurrencyEffectiveCost-C-000-C", "PricingCurrencyListUnitPrice-C-000-C",
                 "PricingCurrencyContractedUnitPrice-C-000-C"):  # fmt: skip
        assert rule in report.checked and rule not in report.failed, rule
    with out.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert {(r["BillingCurrency"], r["PricingCurrency"]) for r in rows} == {("EUR", "USD")}
    for r in rows:  # the USD amounts are the EUR ones at the month's rate, to the micro-dollar
        assert abs(Decimal(r["PricingCurrencyEffectiveCost"]) * rate - Decimal(r["EffectiveCost"])) <= Decimal("0.000001")
        if r["ListUnitPrice"]:
            assert Decimal(r["PricingCurrencyListUnitPrice"]) * rate == pytest.approx(Decimal(r["ListUnitPrice"]), rel=Decimal("1e-20"))
