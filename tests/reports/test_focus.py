"""FOCUS 1.3 and Parquet: the 1.3 column set, shared costs in the Allocated* columns, x_ columns
last, and a Parquet file with the same data, money as decimals."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from meterline.reports.csvsafe import safe_text
from meterline.reports.focus import COLUMNS, X_COLUMNS
from meterline.reports.numbering import statement_number
from tests.conftest import run_cli
from tests.reports.months import hard_month

# The Cost and Usage columns of FOCUS 1.3 (its spec's column list); ProviderName and
# PublisherName are deprecated in 1.3 and still part of it.
FOCUS_13 = set(
    """
AllocatedMethodDetails AllocatedMethodId AllocatedResourceId AllocatedResourceName AllocatedTags AvailabilityZone
BilledCost BillingAccountId BillingAccountName BillingAccountType BillingCurrency BillingPeriodEnd BillingPeriodStart
CapacityReservationId CapacityReservationStatus ChargeCategory ChargeClass ChargeDescription ChargeFrequency
ChargePeriodEnd ChargePeriodStart CommitmentDiscountCategory CommitmentDiscountId CommitmentDiscountName
CommitmentDiscountQuantity CommitmentDiscountStatus CommitmentDiscountType CommitmentDiscountUnit ConsumedQuantity
ConsumedUnit ContractApplied ContractedCost ContractedUnitPrice EffectiveCost HostProviderName InvoiceId
InvoiceIssuerName ListCost ListUnitPrice PricingCategory PricingCurrency PricingCurrencyContractedUnitPrice
PricingCurrencyEffectiveCost PricingCurrencyListUnitPrice PricingQuantity PricingUnit ProviderName PublisherName
RegionId RegionName ResourceId ResourceName ResourceType ServiceCategory ServiceName ServiceProviderName
ServiceSubcategory SkuId SkuMeter SkuPriceDetails SkuPriceId SubAccountId SubAccountName SubAccountType Tags
""".split()
)
NEW_IN_13 = {"ServiceProviderName", "HostProviderName", "AllocatedMethodId", "AllocatedMethodDetails",
             "AllocatedResourceId", "AllocatedResourceName", "AllocatedTags"}  # fmt: skip


@pytest.fixture(scope="module")
def month(tmp_path_factory):
    return hard_month(tmp_path_factory.mktemp("hard"))


def _export(month, *args, check=True):
    return run_cli(
        "export",
        "chargeback",
        "--month",
        month.period,
        "--config",
        str(month.config),
        *args,
        check=check,
    )


def _rows(text):
    return list(csv.DictReader(io.StringIO(text, newline="")))


def test_focus_13_has_the_13_columns_and_x_columns_after_all_of_them(month):
    header = next(
        csv.reader(
            io.StringIO(_export(month, "--format", "focus", "--focus-version", "1.3").stdout)
        )
    )
    focus = [c for c in header if not c.startswith("x_")]
    assert header == COLUMNS["1.3"] and header[len(focus) :] == X_COLUMNS
    assert set(focus) <= FOCUS_13 and NEW_IN_13 <= set(focus)
    assert not NEW_IN_13 & set(COLUMNS["1.2"])


def test_focus_13_puts_shared_cost_allocation_in_the_allocated_columns(month):
    rows = _rows(_export(month, "--format", "focus", "--focus-version", "1.3").stdout)
    shared = [r for r in rows if Decimal(r["x_AllocatedCost"]) > 0]
    assert shared and all(r["AllocatedMethodId"] == "meterline-even" for r in shared)
    ratios = [
        Decimal(r["AllocatedMethodDetails"].split('"AllocatedRatio":')[1].split(",")[0])
        for r in shared
    ]
    assert abs(sum(ratios) - 1) < Decimal("0.000001")  # the shares of one pool add up to 100 %
    legal = next(r for r in rows if r["x_Department"] == "legal")  # no usage: its share only
    assert (legal["ChargeCategory"], legal["AllocatedResourceId"], legal["PricingUnit"]) == (
        "Usage",
        "legal",
        "Month",
    )
    assert all(not r["AllocatedMethodId"] for r in rows if Decimal(r["x_AllocatedCost"]) <= 0)
    assert {(r["ServiceProviderName"], r["InvoiceIssuerName"]) for r in rows} == {
        ("Meterline", "Meterline")
    }
    assert {r["HostProviderName"] for r in rows} == {"sim", "github", "Meterline"}
    assert {r["InvoiceId"] for r in rows if r["x_Department"] == "research"} == {
        statement_number(month.period, "research")
    }


def test_focus_parquet_holds_the_csv_data_with_money_as_decimals(month, tmp_path):
    for version in ("1.2", "1.3"):
        out = tmp_path / f"focus-{version}.parquet"
        _export(month, "--format", "focus-parquet", "--focus-version", version, "--out", str(out))
        table = pq.read_table(out)
        assert table.column_names == COLUMNS[version]
        for c in (
            "BilledCost",
            "EffectiveCost",
            "ListCost",
            "ContractedCost",
            "PricingQuantity",
            "x_UsageCost",
        ):
            assert pa.types.is_decimal(table.schema.field(c).type), c
        assert pa.types.is_timestamp(table.schema.field("ChargePeriodStart").type)
        rows = _rows(_export(month, "--format", "focus", "--focus-version", version).stdout)
        got = table.to_pylist()
        assert len(got) == len(rows)
        for p, c in zip(got, rows, strict=True):
            assert (
                p["BilledCost"] == Decimal(c["BilledCost"])
                and safe_text(p["x_Project"]) == c["x_Project"]
            )
            quantity = Decimal(c["PricingQuantity"]) if c["PricingQuantity"] else None  # none on Credit rows
            assert p["InvoiceId"] == (c["InvoiceId"] or None) and p["PricingQuantity"] == quantity
        # Parquet is no spreadsheet: names are kept as recorded, only the CSV quotes them.
        assert any(r["x_Project"].startswith("=") for r in got)
        assert sum(r["BilledCost"] for r in got) == sum(
            Decimal(r["billed_usd"]) for r in _rows(_export(month).stdout)
        )


def test_an_unknown_focus_version_is_a_one_line_error(month):
    res = _export(month, "--format", "focus", "--focus-version", "1.1", check=False)
    assert res.returncode != 0 and "--focus-version" in res.stderr and "Traceback" not in res.stderr


def test_every_usage_row_names_its_sku_price_and_a_usd_chargeback_prices_in_its_own_currency(month):
    rows = _rows(_export(month, "--format", "focus").stdout)
    usage = [r for r in rows if r["ChargeCategory"] == "Usage"]
    assert usage and {r["PricingCurrency"] for r in rows} == {"USD"}
    for r in usage:
        assert r["SkuPriceId"] == r["SkuId"]  # one price per SKU at a time: the row's unit price
        assert r["SkuMeter"] == (r["PricingUnit"] if r["SkuId"] else "")
        assert r["SkuPriceDetails"] == ""
    for r in rows:  # billed in USD: the pricing currency's amounts are the billing ones
        assert r["PricingCurrencyEffectiveCost"] == r["EffectiveCost"]
        assert r["PricingCurrencyListUnitPrice"] == r["ListUnitPrice"]
        assert r["PricingCurrencyContractedUnitPrice"] == r["ContractedUnitPrice"]
    assert {r["SkuMeter"] for r in usage} >= {"Tokens", "Calls"}
