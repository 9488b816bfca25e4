"""The admin API's chargeback: the export's data as JSON, behind the admin key."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx

from meterline.costing import close_period
from tests.conftest import ADMIN_KEY, run_cli
from tests.seed import event, seed

AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}


def test_admin_chargeback_is_the_json_export_and_needs_the_admin_key(make_proxy):
    p = make_proxy(chargeback={"shared_costs": [{"name": "platform", "monthly_usd": "10"}], "markup_percent": {"product": "5"}})
    ts = datetime(2026, 7, 7, tzinfo=UTC)
    seed(p.engine, [event("1.5", ts), event("2", ts, department="product", team="web", project="=1+1")])
    url = p.url + "/admin/reports/chargeback"

    assert httpx.get(url, params={"month": "2026-07"}).status_code == 401
    bad = httpx.get(url, params={"month": "July"}, headers=AUTH)
    assert (bad.status_code, bad.json()["error"]["code"]) == (400, "invalid_request")
    assert httpx.get(url, headers=AUTH).status_code == 400

    live = httpx.get(url, params={"month": "2026-07"}, headers=AUTH).json()
    exported = json.loads(run_cli("export", "chargeback", "--month", "2026-07", "--format", "json", "--config", str(p.config_path)).stdout)
    assert live == exported
    assert (live["total"], live["closed_at"]) == ("13.89", None)  # 3.5 + 10 + 5% of (2 + 10 * 2/3.5)
    assert {d["department"]: d["billed"] for d in live["departments"]} == {"research": "5.79", "product": "8.10"}

    close_period(p.engine, p.settings, "2026-07")
    seed(p.engine, [event("100", ts, call_id="after-close-0001")])  # written as if it were not late
    closed = httpx.get(url, params={"month": "2026-07"}, headers=AUTH).json()
    assert closed["closed_at"] and closed["lines"] == live["lines"] and closed["total"] == live["total"]
