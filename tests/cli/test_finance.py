"""Finance's commands: closing months, price versions, readable chargeback and showback."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import yaml

from meterline.costing import create_engine, create_schema
from tests.conftest import base_config, run_cli
from tests.seed import event, seed


@pytest.fixture
def cfg(tmp_path):
    raw = base_config(
        tmp_path,
        "http://127.0.0.1:9",
        chargeback={"shared_costs": [{"name": "platform", "monthly_usd": "30"}], "markup_percent": {"product": "10"}},
    )
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    engine = create_engine(raw["database"])
    create_schema(engine)
    now = datetime.now(UTC)
    last = (now.replace(day=1) - timedelta(days=1)).replace(day=5, tzinfo=UTC)
    seed(engine, [
        event("2", last, team="nlp"),
        event("1", last, department="product", team="web", cost_center="CC-200"),
        event("3", now, team="nlp"),
        event("1", now, department="product", team="web", cost_center="CC-200"),
    ])  # fmt: skip
    engine.dispose()
    return str(path), last.strftime("%Y-%m"), now.strftime("%Y-%m")


def _one_line_error(res, text):
    assert res.returncode == 1, res.stdout
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
    assert text in res.stderr


def test_closing_a_month_that_has_not_ended_needs_force_and_a_month_closes_once(cfg):
    path, last, this = cfg
    _one_line_error(run_cli("period", "close", this, "--config", path, check=False), "has not ended yet")
    _one_line_error(run_cli("period", "close", "2026-13", "--config", path, check=False), "expected YYYY-MM")
    assert "closed" in run_cli("period", "close", last, "--config", path).stdout
    _one_line_error(run_cli("period", "close", last, "--config", path, check=False), "already closed")
    assert "closed" in run_cli("period", "close", this, "--force", "--config", path).stdout


def test_chargeback_report_shows_departments_month_over_month_and_a_forecast(cfg):
    path, last, this = cfg
    table = run_cli("report", "chargeback", "--month", this, "--config", path).stdout
    assert f"Chargeback {this} (open, USD)" in table
    assert "Research" in table and "Product" in table and last in table
    assert f"Forecast for the end of {this}" in table
    data = json.loads(run_cli("report", "chargeback", "--month", this, "--json", "--config", path).stdout)
    # this month: usage 4 + shared 30 (research 3/4, product 1/4) + 10% markup on product's 8.5
    assert Decimal(data["total"]) == Decimal("34.85")
    assert Decimal(data["previous_total"]) == Decimal("33.00") + Decimal("1.10")
    assert Decimal(data["forecast"]) >= Decimal(data["total"])  # the run rate never shrinks the month
    past = run_cli("report", "chargeback", "--month", last, "--config", path).stdout
    assert "Forecast" not in past


def test_showback_compares_with_the_month_before_and_forecasts_the_open_month(cfg):
    path, last, this = cfg
    data = json.loads(run_cli("report", "showback", "--month", this, "--json", "--config", path).stdout)
    assert (Decimal(data["total_usd"]), Decimal(data["previous_total_usd"])) == (4, 3)
    assert Decimal(data["change_percent"]) == Decimal("33.3")
    research = next(d for d in data["departments"] if d["department"] == "research")
    assert (Decimal(research["previous_cost_usd"]), Decimal(research["change_percent"])) == (2, 50)
    assert Decimal(data["forecast_usd"]) >= 4
    table = run_cli("report", "showback", "--month", this, "--config", path).stdout
    assert "+33.3%" in table and f"Forecast for the end of {this}" in table
    assert json.loads(run_cli("report", "showback", "--month", last, "--json", "--config", path).stdout)["forecast_usd"] is None


def test_prices_show_lists_versions_and_errors_on_an_unknown_model(cfg):
    path, _, _ = cfg
    out = run_cli("prices", "show", "house-model", "--config", path).stdout
    assert "house-model" in out and "applies on" in out
    _one_line_error(run_cli("prices", "show", "no-such-model", "--config", path, check=False), "no price for model")
    _one_line_error(run_cli("prices", "show", "house-model", "--on", "tuesday", "--config", path, check=False), "--on")
