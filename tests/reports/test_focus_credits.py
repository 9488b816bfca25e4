"""Credits in the FOCUS export: Credit rows with a negative BilledCost, adding up to the
chargeback CSV's credit_usd, and BilledCost to its billed_usd (the validator runs on the same
month in test_focus_validator.py)."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest

from tests.conftest import run_cli
from tests.reports.months import hard_month


@pytest.fixture(scope="module")
def month(tmp_path_factory):
    return hard_month(tmp_path_factory.mktemp("hard"))


def _rows(month, *args):
    out = run_cli("export", "chargeback", "--month", month.period, "--config", str(month.config), *args).stdout
    return list(csv.DictReader(io.StringIO(out, newline="")))


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_credit_rows_carry_the_credits_negative_and_billed_cost_adds_up_to_billed_usd(month, version):
    lines = _rows(month)
    focus = _rows(month, "--format", "focus", "--focus-version", version)
    credits = [r for r in focus if r["ChargeCategory"] == "Credit"]
    assert {(r["x_Department"], r["x_Team"]) for r in credits} == {("research", "nlp"), ("product", "web")}
    for r in credits:
        drawn = sum(Decimal(ln["credit_usd"]) for ln in lines if (ln["department"], ln["team"]) == (r["x_Department"], r["x_Team"]))
        assert Decimal(r["BilledCost"]) == Decimal(r["EffectiveCost"]) == -drawn < 0
        assert r["ConsumedQuantity"] == r["ConsumedUnit"] == r["SkuId"] == ""  # no usage
        assert r["InvoiceId"] == f"ML-{month.period}-{r['x_Department'].upper()}"
    billed = sum(Decimal(ln["billed_usd"]) for ln in lines)
    assert sum(Decimal(r["BilledCost"]) for r in focus) == billed
    assert sum(Decimal(r["BilledCost"]) for r in focus if r["ChargeCategory"] == "Usage") == sum(
        Decimal(ln["charge_usd"]) for ln in lines
    )
    assert Decimal(next(r for r in credits if r["x_Team"] == "nlp")["BilledCost"]) == Decimal("-100.333333")
