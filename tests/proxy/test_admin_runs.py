"""GET /admin/runs and /admin/runs/{trace_id}: agent runs with their cost over the whole tree,
the same numbers as `meterline report runs|call` and the sum of the runs' events (issue 14)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest

from meterline.costing import ZERO, from_pico
from meterline.reports.agents import run_detail
from tests.conftest import ADMIN_KEY, FINANCE_KEY, run_cli
from tests.proxy.test_run_links import agent_turns, client
from tests.seed import agent_runs, seed

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
FINANCE = {"Authorization": f"Bearer {FINANCE_KEY}"}
T0 = datetime(2026, 11, 10, 9, 0, tzinfo=UTC)


@pytest.fixture
def api(proxy):
    with httpx.Client(base_url=proxy.url, headers=ADMIN, timeout=30) as c:
        yield c


def test_runs_are_the_cli_report_and_each_costs_the_sum_of_its_events(proxy, api):
    seeded = agent_runs(T0)
    seed(proxy.engine, [row for r in seeded for row in r.rows])
    listed = api.get("/admin/runs", params={"month": "2026-11", "top": 10}).json()
    cli = json.loads(run_cli("report", "runs", "--month", "2026-11", "--top", "10", "--json", "--config", str(proxy.config_path)).stdout)
    assert listed["month"] == "2026-11"
    assert listed["runs"] == [{k: v for k, v in r.items() if k != "tree"} for r in cli]
    for s in seeded:
        run = next(r for r in listed["runs"] if r["trace_id"] == s.trace_id)
        assert Decimal(run["cost_usd"]) == sum((from_pico(e["cost_pico"]) for e in s.rows), ZERO)
        assert run["calls"] == len(s.rows) and sum(run["links"].values()) == len(s.rows)
        one = api.get(f"/admin/runs/{s.trace_id}").json()
        assert one == run_detail(proxy.engine, s.trace_id).as_dict()
        assert {k: v for k, v in one.items() if k != "tree"} == run
        assert sorted(n["call_id"] for n in walk(one["tree"])) == sorted(e["call_id"] for e in s.rows)
    assert [r["trace_id"] for r in api.get("/admin/runs", params={"month": "2026-11", "top": 1}).json()["runs"]] == [cli[0]["trace_id"]]


def walk(nodes):
    for n in nodes:
        yield n
        yield from walk(n["children"])


def test_runs_linked_from_live_traffic_show_how_each_call_joined(proxy, api):
    first, second = agent_turns(client(proxy, proxy.key("nlp")), stream=False)
    header = client(proxy, proxy.key("web"), **{"X-Meterline-Run": "ticket-7"})
    ids = [header.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
           .headers["x-meterline-call-id"] for _ in range(3)]  # fmt: skip
    events = {e["call_id"]: e for e in proxy.events()}
    month = events[first]["charge_period"]
    runs = {r["trace_id"]: r for r in api.get("/admin/runs", params={"month": month}).json()["runs"]}
    turns = runs[events[first]["trace_id"]]
    assert (turns["calls"], turns["links"], turns["team"], turns["depth"]) == (2, {"root": 1, "continuation": 1}, "nlp", 2)
    assert Decimal(turns["cost_usd"]) == from_pico(events[first]["cost_pico"] + events[second]["cost_pico"]) > 0
    named = runs[events[ids[0]]["trace_id"]]
    assert (named["calls"], named["links"], named["department"], named["fan_out"]) == (3, {"root": 1, "header": 2}, "product", 2)
    assert Decimal(named["cost_usd"]) == sum((from_pico(events[i]["cost_pico"]) for i in ids), ZERO)
    assert [n["link"] for n in api.get(f"/admin/runs/{named['trace_id']}").json()["tree"][0]["children"]] == ["header", "header"]


def test_the_finance_key_reads_runs_and_bad_requests_get_openai_errors(proxy, api):
    seed(proxy.engine, agent_runs(T0)[1].rows)
    trace = agent_runs(T0)[1].trace_id
    with httpx.Client(base_url=proxy.url, headers=FINANCE) as fin:
        assert fin.get("/admin/runs", params={"month": "2026-11"}).json()["runs"][0]["trace_id"] == trace
        assert fin.get(f"/admin/runs/{trace}", params={"month": "2026-11"}).json()["calls"] == 5
    assert httpx.get(proxy.url + "/admin/runs", params={"month": "2026-11"}).status_code == 401
    for path, params, status, code in (
        ("/admin/runs", {"month": "Nov"}, 400, "invalid_request"),
        ("/admin/runs", {"month": "2026-11", "top": 0}, 400, "invalid_request"),
        ("/admin/runs/xyz", {}, 400, "invalid_request"),
        (f"/admin/runs/{'0' * 32}", {}, 404, "run_not_found"),
        (f"/admin/runs/{trace}", {"month": "2026-10"}, 404, "run_not_found"),
    ):
        r = api.get(path, params=params)
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), path
    spec = api.get("/openapi.json").json()
    assert spec["paths"]["/admin/runs/{trace_id}"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert {"RunOut", "RunList", "RunCall"} <= set(spec["components"]["schemas"])
