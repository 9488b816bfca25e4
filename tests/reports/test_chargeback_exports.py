"""Chargeback files as finance gets them: closed months that never change, adjustments, FOCUS, safe cells."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import yaml

from meterline.costing import create_engine, create_schema
from meterline.costing.ingest import LedgerWriter
from meterline.costing.spool import Spool
from tests.conftest import base_config, run_cli
from tests.seed import event, seed

RULES = {
    "markup_percent": {"product": "12.5"},
    "default_markup_percent": "-2",
    "shared_costs": [{"name": "platform", "monthly_usd": "100"}, {"name": "support", "monthly_usd": "0.333333"}],
    "allocation": "proportional",
}


def _months():
    """The month before this one (closable) and this one (open)."""
    now = datetime.now(UTC)
    last = (now.replace(day=1) - timedelta(days=1)).replace(day=10, hour=12, tzinfo=UTC)
    return last, now


@pytest.fixture
def ledger(tmp_path):
    cfg = base_config(tmp_path, "http://127.0.0.1:9", chargeback=RULES)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    engine = create_engine(cfg["database"])
    create_schema(engine)
    yield engine, str(path), tmp_path
    engine.dispose()


def _seed_month(engine, ts):
    seed(engine, [
        event("1.234567891234", ts, team="nlp", project="alpha", tags="env=prod,feature=search"),
        event("0.000000333333", ts, team="vision"),
        event("2.5", ts, department="product", team="web", cost_center="CC-200", project="=HYPERLINK(\"http://x\")"),
        event("0.75", ts, department="", team="", key_team="ghost"),
        event("0.01", ts, kind="mcp", provider="github", model="", tool="search_code", method="tools/call"),
    ])  # fmt: skip


def _rows(text):
    return list(csv.DictReader(io.StringIO(text)))


def _export(cfg, month, *extra):
    return run_cli("export", "chargeback", "--month", month, "--config", cfg, *extra).stdout


def test_closing_a_month_freezes_its_export_and_late_events_become_adjustments_next_month(ledger):
    engine, cfg, tmp_path = ledger
    last, now = _months()
    month, next_month = last.strftime("%Y-%m"), now.strftime("%Y-%m")
    _seed_month(engine, last)
    before = {fmt: _export(cfg, month, "--format", fmt) for fmt in ("csv", "focus")}

    out = run_cli("period", "close", month, "--config", cfg).stdout
    assert out.startswith(f"closed {month}")

    # A late call of the closed month reaches the ledger the way the proxy's writer sends it.
    late = event("0.420000", last + timedelta(days=3), team="nlp", project="late-run")
    late.pop("charge_period"), late.pop("adjustment")
    spool = Spool(tmp_path / "spool")
    spool.append(late)
    LedgerWriter(engine, spool).flush()
    spool.close()

    for fmt, text in before.items():
        assert _export(cfg, month, "--format", fmt) == text
    closed = json.loads(_export(cfg, month, "--format", "json"))
    assert closed["closed_at"]
    assert not any(ln["project"] == "late-run" for ln in closed["lines"])

    rows = _rows(_export(cfg, next_month))
    (adj,) = [r for r in rows if r["adjustment"] == "true"]
    assert (adj["period"], adj["team"], adj["project"], adj["cost_usd"]) == (next_month, "nlp", "late-run", "0.420000")
    table = run_cli("report", "chargeback", "--month", next_month, "--config", cfg).stdout
    assert "Adjustments: 1 lines" in table
    focus = _rows(_export(cfg, next_month, "--format", "focus"))
    assert [r["ChargeClass"] for r in focus if r["x_Adjustment"] == "true"] == ["Correction"]


def test_focus_billed_cost_adds_up_to_the_chargeback_csv_and_the_ledger_plus_shared_plus_markup(ledger):
    engine, cfg, _ = ledger
    last, _ = _months()
    month = last.strftime("%Y-%m")
    _seed_month(engine, last)
    lines = _rows(_export(cfg, month))
    focus = _rows(_export(cfg, month, "--format", "focus"))
    charge_total = sum(Decimal(r["charge_usd"]) for r in lines)
    assert sum(Decimal(r["BilledCost"]) for r in focus) == charge_total
    assert len(focus) == len(lines)
    assert sum(Decimal(r["cost_usd"]) for r in lines) == Decimal("4.494568")  # the ledger, to six places
    assert sum(Decimal(r["allocated_usd"]) for r in lines) == Decimal("100.333333")
    report = json.loads(run_cli("report", "chargeback", "--month", month, "--json", "--config", cfg).stdout)
    assert Decimal(report["total"]) == sum(Decimal(d["billed"]) for d in report["departments"])
    assert abs(Decimal(report["total"]) - charge_total) < Decimal("0.01")
    for d in report["departments"]:
        mine = [r for r in lines if r["department"] == d["department"]]
        assert sum(Decimal(r["charge_usd"]) for r in mine) == Decimal(d["charge_usd"])
    product = next(d for d in report["departments"] if d["department"] == "product")
    expected_markup = (Decimal(product["cost_usd"]) + Decimal(product["allocated_usd"])) * Decimal("0.125")
    assert abs(Decimal(product["markup_usd"]) - expected_markup) <= Decimal("0.000001")
    unattributed = next(d for d in report["departments"] if d["department"] == "")
    assert Decimal(unattributed["charge_usd"]) == 0 and Decimal(unattributed["cost_usd"]) == Decimal("0.75")
    shares = {r["x_Department"]: r for r in focus}
    assert json.loads(next(r["Tags"] for r in focus if r["x_Project"] == "alpha")) == {"env": "prod", "feature": "search"}
    assert {r["ServiceCategory"] for r in focus} == {"AI and Machine Learning"}
    assert shares["research"]["BillingPeriodStart"] == f"{month}-01T00:00:00Z"
    mcp = next(r for r in focus if r["x_Kind"] == "mcp")
    assert (mcp["ConsumedUnit"], mcp["ConsumedQuantity"], mcp["ResourceName"]) == ("Calls", "1.0", "search_code")  # FOCUS Decimal


def test_a_project_starting_with_an_equals_sign_is_written_as_text(ledger):
    engine, cfg, _ = ledger
    last, _ = _months()
    month = last.strftime("%Y-%m")
    _seed_month(engine, last)
    for fmt, column in (("csv", "project"), ("focus", "x_Project")):
        text = _export(cfg, month, "--format", fmt)
        assert "\n=" not in text and ",=" not in text and ',"=' not in text
        (row,) = [r for r in _rows(text) if "HYPERLINK" in r[column]]
        assert row[column] == "'=HYPERLINK(\"http://x\")"
    negative = [r for r in _rows(_export(cfg, month)) if r["department"] == ""]
    assert all(Decimal(r["allocated_usd"]) < 0 for r in negative)  # numbers stay numbers, sign and all


def test_a_currency_without_a_rate_for_the_month_is_a_one_line_error(tmp_path):
    cfg = base_config(tmp_path, "http://127.0.0.1:9", chargeback={"currency": "EUR", "exchange_rates": {"2026-01": "0.9"}})
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    res = run_cli("export", "chargeback", "--month", "2026-02", "--config", str(path), check=False)
    assert res.returncode == 1 and len(res.stderr.strip().splitlines()) == 1
    assert "no exchange rate for 2026-02" in res.stderr and "Traceback" not in res.stderr
    ok = _rows(run_cli("export", "chargeback", "--month", "2026-01", "--config", str(path)).stdout)
    assert ok == []
