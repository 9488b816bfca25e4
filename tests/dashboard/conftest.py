"""A seeded ledger for the dashboard: two months, three departments, an agent run, budgets,
and the dashboard's logins (admin and a viewer limited to product)."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from streamlit.testing.v1 import AppTest

from meterline.costing import (
    Settings,
    create_engine,
    create_schema,
    previous_period,
    settings_from_dict,
)
from meterline.dashboard import APP_PATH
from meterline.dashboard.auth import throttle
from meterline.dashboard.format import money
from tests.conftest import base_config
from tests.seed import event, seed

ADMIN_PASSWORD = "admin-pw-for-tests"
# The time the dashboard is seen at in these tests (its `--now` seam): the 20th of this month,
# so the month has enough days for a forecast whatever day the tests run on.
NOW = datetime.now(UTC).replace(day=20, hour=15, minute=0, second=0, microsecond=0)
VIEWER_PASSWORD = "product-pw-for-tests"


@dataclass
class Ledger:
    settings: Settings
    engine: sa.Engine
    config_path: Path
    period: str
    previous: str


def dashboard_config(tmp_path: Path) -> dict[str, Any]:
    cfg = base_config(tmp_path, "http://127.0.0.1:9")
    cfg["departments"] = [
        {"id": "research", "name": "Research", "cost_center": "CC-100", "budget_usd_monthly": "100",
         "teams": [{"id": "nlp", "budget_usd_monthly": "1.5"}, {"id": "vision"}]},
        {"id": "product", "name": "Product", "cost_center": "CC-200", "budget_usd_monthly": "4", "teams": [{"id": "web"}]},
        {"id": "legal", "name": "Legal", "cost_center": "CC-300", "teams": [{"id": "contracts"}]},
    ]  # fmt: skip
    cfg["chargeback"] = {"markup_percent": {"product": "10"}, "shared_costs": [{"name": "platform", "monthly_usd": "3"}]}
    cfg["limits"] = [{"team": "nlp", "requests_per_minute": 600, "tokens_per_minute": 200000, "usd_per_hour": "20"},
                     {"department": "product", "usd_per_hour": "5"}]  # fmt: skip
    cfg["alerts"] = {"anomalies": True}
    month = NOW.strftime("%Y-%m")
    cfg["credits"] = [  # nlp's own grant (drawn most of the way), and research's, ending within days of NOW
        {"id": "nlp-pilot", "team": "nlp", "amount_usd": "2", "effective_from": f"{month}-01"},
        {"id": "research-q", "department": "research", "amount_usd": "5", "effective_from": f"{month}-01",
         "expires": (NOW + timedelta(days=5)).strftime("%Y-%m-%d"), "priority": 1},
    ]  # fmt: skip
    cfg["rate_cards"] = [{"department": "product", "effective_from": f"{month}-01", "rates": [{"model": "house-model", "flat_usd": "100"}], "commitment_usd_monthly": "10"}]
    cfg["departments"][0]["teams"][0]["credit_alerts_usd"] = ["1"]
    cfg["dashboard"] = {"viewers": {"product-lead": {"department": "product", "password_env": "METERLINE_VIEWER_PRODUCT"}}}
    return cfg


def _at(now: datetime, fraction: float) -> datetime:
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return start + (now - start) * fraction


def seed_rows(now: datetime) -> list[dict[str, Any]]:
    prev_start = (now.replace(day=1) - timedelta(days=1)).replace(day=3, hour=12, minute=0, second=0, microsecond=0)
    nlp = dict(department="research", team="nlp", cost_center="CC-100")
    web = dict(department="product", team="web", cost_center="CC-200")
    fin = dict(department="legal", team="contracts", cost_center="CC-300")
    trace = "ab" * 16
    rows = [
        event("1.250000", _at(now, 0.1), project="search", user="ana.nlp", model="gpt-4o-mini", tags="env=prod", input_tokens=1000, output_tokens=400, **nlp),
        event("0.500000", _at(now, 0.3), project="search", user="ben.nlp", model="house-model", tags="env=dev", **nlp),
        event("0.000001", _at(now, 0.35), department="research", team="vision", cost_center="CC-100", user="cy.vision", model="gpt-4o-mini"),
        event("3.100000", _at(now, 0.5), project="shop", user="dora.web", model="house-model", tags="env=prod", input_tokens=5000, **web),
        event("0.420000", _at(now, 0.6), project="shop", user="dora.web", model="gpt-4o-mini", usage_source="estimated", status="client_closed", **web),
        event("0", _at(now, 0.65), project="shop", user="eve.web", model="mystery-model", priced=False, price_version="", **web),
        event("0", _at(now, 0.7), user="ben.nlp", model="gpt-4o-mini", status="rejected", http_status=429, input_tokens=0, output_tokens=0, **nlp),
        event("0.777777", _at(now, 0.4), project="books", user="fay.books", model="gpt-4o-mini", **fin),
        # An agent run of team nlp: a tool call whose tool made two LLM calls, and the agent's own LLM call.
        event("0.010000", _at(now, 0.8), call_id="1000000000000001", trace_id=trace, kind="mcp", method="tools/call", provider="sim",
              model="", tool="summarize", input_tokens=0, output_tokens=0, **nlp),
        event("0.030000", _at(now, 0.81), call_id="1000000000000002", trace_id=trace, parent_span_id="1000000000000001", parent_call_id="1000000000000001", **nlp),
        event("0.020000", _at(now, 0.82), call_id="1000000000000003", trace_id=trace, parent_span_id="1000000000000001", parent_call_id="1000000000000001", **nlp),
        event("0.005000", _at(now, 0.83), call_id="1000000000000004", trace_id=trace, **nlp),
        # The month before.
        event("2.000000", prev_start, project="search", user="ana.nlp", **nlp),
        event("1.000000", prev_start + timedelta(days=1), project="shop", user="dora.web", **web),
    ]  # fmt: skip
    return rows


@pytest.fixture(autouse=True)
def fresh_throttle() -> Any:
    """The sign-in throttle is the process's: each test starts with no failures on record."""
    throttle.clear()
    yield
    throttle.clear()


@pytest.fixture
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Ledger:
    cfg = dashboard_config(tmp_path)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    monkeypatch.setenv("METERLINE_CONFIG", str(path))
    monkeypatch.setenv("METERLINE_DASHBOARD_PASSWORD", ADMIN_PASSWORD)
    monkeypatch.setenv("METERLINE_VIEWER_PRODUCT", VIEWER_PASSWORD)
    settings = settings_from_dict(cfg, path=str(path), environ={"METERLINE_DASHBOARD_PASSWORD": ADMIN_PASSWORD})
    engine = create_engine(cfg["database"])
    create_schema(engine)
    now = NOW
    monkeypatch.setattr(sys, "argv", [sys.argv[0], "--now", now.isoformat()])
    seed(engine, seed_rows(now))
    period = now.strftime("%Y-%m")
    return Ledger(settings, engine, path, period, previous_period(period))


def signed_in(user: str = "admin", password: str = ADMIN_PASSWORD) -> AppTest:
    """The dashboard after signing in through its login form."""
    at = AppTest.from_file(str(APP_PATH), default_timeout=60).run()
    assert not at.exception, at.exception
    at.text_input(key="login_user").set_value(user)
    at.text_input(key="login_password").set_value(password)
    at.button[0].click().run()
    assert not at.exception, at.exception
    return at


def rendered(at: AppTest) -> bytes:
    """Every element on the page and in the sidebar, serialized (chart data included)."""

    def walk(node: Any) -> Any:
        yield node
        for child in getattr(node, "children", {}).values():
            yield from walk(child)

    return b"\n".join(n.proto.SerializeToString() for n in walk(at._tree) if getattr(n, "proto", None) is not None)


def columns(at: AppTest, i: int = 0) -> dict[str, dict[str, Any]]:
    """The column configs of the page's `i`th table, by field: label, type_config (format)..."""
    return json.loads(at.dataframe[i].proto.columns)


def labels(at: AppTest, i: int = 0) -> list[str]:
    """The headers a reader sees on the page's `i`th table, in order."""
    cfg = columns(at, i)
    return [cfg[c].get("label", c) for c in at.dataframe[i].value.columns if not cfg.get(c, {}).get("hidden")]


def cells(at: AppTest, i: int = 0) -> list[dict[str, str]]:
    """The page's `i`th table as its reader sees it: each cell formatted the way its column
    says (the browser applies these formats; AppTest only holds the values), by label."""
    cfg = columns(at, i)
    frame = at.dataframe[i].value
    placeholder = at.dataframe[i].proto.placeholder

    def show(column: str, x: Any) -> str:
        if x is None or (isinstance(x, float) and x != x):
            return placeholder
        fmt = cfg.get(column, {}).get("type_config", {}).get("format")
        if fmt == "dollar":  # Intl's currency format: the float's exact value, half away from zero
            return money(Decimal(x).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))
        if fmt == "localized":
            return f"{x:,.0f}" if float(x).is_integer() else f"{x:,}"
        if fmt == "%.1f%%":
            return f"{x:.1f}%"
        if fmt and fmt.startswith("$%."):  # fine_money_col: printf, as the browser formats it
            return "$" + fmt[1:] % x
        return str(x)

    return [{cfg.get(c, {}).get("label", c): show(c, row[c]) for c in frame.columns} for _, row in frame.iterrows()]


def page(at: AppTest, name: str) -> AppTest:
    at.switch_page(f"pages/{name}.py").run()
    assert not at.exception, at.exception
    return at
