"""The admin API over HTTP, as a portal or a Terraform run would drive it: keys that work at
once, scopes, bad input that changes nothing, and numbers equal to the CLI's."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import openai
import pytest

from meterline.costing import list_keys
from tests.conftest import ADMIN_KEY, FINANCE_KEY, run_cli
from tests.replicas.fleet import wait_for
from tests.seed import event, seed

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
FINANCE = {"Authorization": f"Bearer {FINANCE_KEY}"}
CONFIG = {"departments": [
    {"id": "research", "name": "Research", "cost_center": "CC-100", "budget_usd_monthly": "50", "teams": [{"id": "nlp", "budget_usd_monthly": "10"}, {"id": "vision"}]},
    {"id": "product", "name": "Product", "cost_center": "CC-200", "teams": [{"id": "web"}]},
]}  # fmt: skip


@pytest.fixture
def p(make_proxy):
    return make_proxy(server={"key_refresh_seconds": 3600}, **CONFIG)  # no refresh: keys must work at once


@pytest.fixture
def api(p):
    with httpx.Client(base_url=p.url, headers=ADMIN, timeout=30) as c:
        yield c


def chat(p, key: str, content: str = "hi"):
    c = openai.OpenAI(base_url=p.url + "/v1", api_key=key, max_retries=0)
    return c.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=[{"role": "user", "content": content}])


def refused(p, key: str) -> str:
    with pytest.raises(openai.AuthenticationError) as e:
        chat(p, key)
    assert e.value.body["code"] == "invalid_api_key"
    return e.value.body["message"]


def test_a_key_issued_over_the_api_works_at_once_and_is_refused_once_revoked(p, api):
    r = api.post("/admin/keys", json={"team": "web", "name": "portal", "project": "checkout", "models": ["gpt-4o*"], "budget_usd_monthly": "25.50"})
    assert r.status_code == 201
    made = r.json()
    assert (made["team"], made["department"], made["budget_usd_monthly"], made["status"]) == ("web", "product", "25.500000", "active")
    assert chat(p, made["key"]).headers["x-meterline-call-id"]  # the very next request

    shown = api.get(f"/admin/keys/{made['id']}").json()
    listed = api.get("/admin/keys", params={"department": "product"}).json()
    assert [k["id"] for k in listed["data"]] == [made["id"]] and listed["has_more"] is False
    assert api.get("/admin/keys", params={"team": "nlp"}).json()["data"] == []
    gone = api.delete(f"/admin/keys/{made['id']}")
    assert gone.status_code == 200 and gone.json()["status"] == "revoked"
    for answer in (shown, listed, gone.json()):
        assert made["key"] not in json.dumps(answer) and "key" not in (answer.get("data") or [answer])[0]
    refused(p, made["key"])  # at once, on the replica that revoked it


def test_keys_are_listed_in_pages(api):
    ids = [api.post("/admin/keys", json={"team": "nlp"}).json()["id"] for _ in range(5)]
    first = api.get("/admin/keys", params={"limit": 2}).json()
    assert first["has_more"] and [k["id"] for k in first["data"]] == ids[:2]
    rest = api.get("/admin/keys", params={"limit": 10, "after": first["last_id"]}).json()
    assert [k["id"] for k in rest["data"]] == ids[2:] and not rest["has_more"]


def test_rotation_keeps_the_key_id_and_the_old_secret_stops_after_its_grace(p, api):
    made = api.post("/admin/keys", json={"team": "nlp"}).json()
    before = chat(p, made["key"]).headers["x-meterline-call-id"]
    long = api.post(f"/admin/keys/{made['id']}/rotate", json={"grace_seconds": 3600}).json()
    assert long["id"] == made["id"] and long["key"] != made["key"] and long["previous_key_valid_until"]
    during = chat(p, made["key"]).headers["x-meterline-call-id"]  # within the grace
    short = api.post(f"/admin/keys/{made['id']}/rotate", json={"grace_seconds": 0.5}).json()
    after = chat(p, short["key"]).headers["x-meterline-call-id"]
    refused(p, made["key"])  # a second rotation ended the first one's grace
    wait_for("the replaced secret to stop after its grace", lambda: _is_refused(p, long["key"]))
    assert "replaced by a rotation" in refused(p, long["key"])
    rows = {e["call_id"]: e["key_id"] for e in p.events()}
    assert {rows[c] for c in (before, during, after)} == {made["id"]}


def _is_refused(p, key: str) -> bool:
    try:
        chat(p, key)
    except openai.AuthenticationError:
        return True
    return False


def test_bad_input_gets_an_openai_error_and_changes_nothing(p, api):
    existing = api.post("/admin/keys", json={"team": "nlp"}).json()
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    cases = [
        ("post", "/admin/keys", {"json": {"team": "nope"}}, 400, "team"),
        ("post", "/admin/keys", {"json": {"team": "nlp", "expires_at": past}}, 400, "expires_at"),
        ("post", "/admin/keys", {"json": {"team": "nlp", "expires_at": "2099-01-01T00:00:00"}}, 400, "expires_at"),
        ("post", "/admin/keys", {"json": {"team": "nlp", "colour": "red"}}, 400, "colour"),
        ("post", "/admin/keys", {"json": {"team": "nlp", "budget_usd_monthly": "-1"}}, 400, "budget_usd_monthly"),
        ("post", "/admin/keys", {"content": b"{not json"}, 400, None),
        ("get", "/admin/keys/key_nope", {}, 404, "id"),
        ("delete", "/admin/keys/key_nope", {}, 404, "id"),
        ("post", "/admin/keys/key_nope/rotate", {}, 404, "id"),
        ("post", f"/admin/keys/{existing['id']}/rotate", {"json": {"grace": 1}}, 400, "grace"),
        ("get", "/admin/keys", {"params": {"department": "nope"}}, 400, "department"),
        ("get", "/admin/usage", {"params": {"month": "2026-13"}}, 400, "month"),
        ("get", "/admin/usage", {"params": {"month": "2026-07", "group_by": "colour"}}, 400, "group_by"),
        ("get", "/admin/budgets", {"params": {"month": "July"}}, 400, "month"),
        ("get", "/admin/exports/events", {"params": {"month": "2026-07", "format": "xml"}}, 400, "format"),
        ("post", "/admin/periods/2026-7/close", {}, 400, "period"),
    ]
    for method, path, kw, status, param in cases:
        r = api.request(method, path, **kw)
        assert r.status_code == status, (path, kw, r.text)
        err = r.json()["error"]
        assert set(err) == {"message", "type", "code", "param"} and isinstance(err["code"], str)
        if param:
            assert param in (err["param"] or ""), (path, kw, err)
    assert [k.id for k in list_keys(p.engine)] == [existing["id"]]  # nothing made, nothing changed
    assert chat(p, existing["key"])


def test_the_finance_key_reads_and_closes_months_but_cannot_manage_keys(p, api):
    with httpx.Client(base_url=p.url, headers=FINANCE) as fin:
        for path in ("/admin/usage", "/admin/budgets", "/admin/reports/chargeback", "/admin/exports/chargeback", "/admin/exports/events"):
            assert fin.get(path, params={"month": "2026-07"}).status_code == 200, path
        assert fin.post("/admin/periods/2026-07/close").status_code == 200
        for method, path in (("post", "/admin/keys"), ("get", "/admin/keys"), ("delete", "/admin/keys/x"), ("post", "/admin/ledger/flush")):
            r = fin.request(method, path, json={"team": "nlp"} if method == "post" else None)
            assert (r.status_code, r.json()["error"]["code"]) == (403, "permission_denied"), path
    assert list_keys(p.engine) == []
    for token in ("x", "admin-test-ke", ADMIN_KEY + "x", FINANCE_KEY + "x"):
        r = httpx.get(p.url + "/admin/usage", params={"month": "2026-07"}, headers={"Authorization": f"Bearer {token}"})
        assert (r.status_code, r.json()["error"]["code"]) == (401, "invalid_api_key")


def test_usage_equals_showback_and_the_chargeback_export_to_the_cent(p, api, tmp_path):
    ts = datetime(2026, 7, 7, 10, tzinfo=UTC)
    seed(p.engine, [
        event("1.234567891", ts, key_id="key_a"), event("2.5", ts + timedelta(days=1), key_id="key_b", project="x"),
        event("0.000000001", ts, department="product", team="web", key_id="key_c", model="house-model"),
    ])  # fmt: skip
    cfg = str(p.config_path)
    show = json.loads(run_cli("report", "showback", "--month", "2026-07", "--json", "--config", cfg).stdout)
    by_team = api.get("/admin/usage", params={"month": "2026-07"}).json()
    assert Decimal(by_team["total_usd"]) == Decimal(show["total_usd"])
    teams = {(r["department"], r["team"]): Decimal(r["cost_usd"]) for r in by_team["rows"]}
    assert teams == {(d["department"], t["team"]): Decimal(t["cost_usd"]) for d in show["departments"] for t in d["teams"]}
    for group_by in ("day", "key", "model,project", "department,team,project,model,key,day", ""):
        rows = api.get("/admin/usage", params={"month": "2026-07", "group_by": group_by}).json()["rows"]
        assert sum(Decimal(r["cost_usd"]) for r in rows) == Decimal(show["total_usd"]), group_by
    keys = {r["key_id"]: r["cost_usd"] for r in api.get("/admin/usage", params={"month": "2026-07", "group_by": "key"}).json()["rows"]}
    assert keys == {"key_a": "1.234567891", "key_b": "2.500000", "key_c": "0.000000001"}

    exported = run_cli("export", "chargeback", "--month", "2026-07", "--config", cfg).stdout
    charged = sum(Decimal(r["cost_usd"]) for r in csv.DictReader(io.StringIO(exported)))
    assert charged.quantize(Decimal("0.01")) == Decimal(by_team["total_usd"]).quantize(Decimal("0.01"))
    for kind, fmt in (("chargeback", "csv"), ("chargeback", "focus"), ("events", "csv"), ("events", "jsonl")):
        live = api.get(f"/admin/exports/{kind}", params={"month": "2026-07", "format": fmt})
        assert live.status_code == 200 and "attachment" in live.headers["content-disposition"]
        assert live.text == run_cli("export", kind, "--month", "2026-07", "--format", fmt, "--config", cfg).stdout, (kind, fmt)
    for fmt in ("focus", "focus-parquet"):  # FOCUS 1.3 and Parquet: the CLI's bytes too
        live = api.get("/admin/exports/chargeback", params={"month": "2026-07", "format": fmt, "focus_version": "1.3"})
        out = tmp_path / f"chargeback.{fmt}"
        run_cli("export", "chargeback", "--month", "2026-07", "--format", fmt, "--focus-version", "1.3", "--out", str(out), "--config", cfg)
        assert live.status_code == 200 and live.content == out.read_bytes(), fmt

    closed = api.post("/admin/periods/2026-07/close")
    assert closed.status_code == 200 and closed.json()["total"] == "3.73"
    assert api.post("/admin/periods/2026-07/close").json()["error"]["code"] == "period_closed"
    assert api.post("/admin/periods/2999-01/close").json()["error"]["code"] == "period_not_ended"


def test_budgets_show_limit_spent_reserved_and_what_is_left(p, api):
    month = datetime.now(UTC).strftime("%Y-%m")
    made = api.post("/admin/keys", json={"team": "nlp", "budget_usd_monthly": "3"}).json()
    seed(p.engine, [event("1.5", key_id=made["id"])])
    got = {(b["scope"], b["id"]): b for b in api.get("/admin/budgets", params={"month": month}).json()["budgets"]}
    assert set(got) == {("department", "research"), ("team", "nlp"), ("key", made["id"])}
    team = got[("team", "nlp")]
    assert (team["limit_usd"], team["spent_usd"], team["reserved_usd"], team["remaining_usd"]) == ("10.000000", "1.500000", "0.000000", "8.500000")
    assert "forecast_usd" in team and got[("key", made["id"])]["spent_usd"] == "1.500000"  # no forecast in the first days


def test_a_key_holder_sees_its_own_spend_and_budgets_and_nothing_of_other_keys(p, api):
    mine = api.post("/admin/keys", json={"team": "nlp", "expires_at": "2099-01-01T00:00:00Z", "budget_usd_monthly": "2"}).json()
    other = api.post("/admin/keys", json={"team": "nlp"}).json()
    seed(p.engine, [event("0.75", key_id=mine["id"]), event("4", key_id=other["id"])])
    r = httpx.get(p.url + "/v1/meterline/usage", headers={"Authorization": f"Bearer {mine['key']}"})
    assert r.status_code == 200
    got = r.json()
    assert {k: got[k] for k in ("key_id", "team", "department", "spend_usd", "expires_at")} == {
        "key_id": mine["id"], "team": "nlp", "department": "research", "spend_usd": "0.750000", "expires_at": "2099-01-01T00:00:00Z",
    }  # fmt: skip
    budgets = {(b["scope"], b["id"]): (b["limit_usd"], b["remaining_usd"]) for b in got["budgets"]}
    assert budgets == {
        ("department", "research"): ("50.000000", "45.250000"),
        ("team", "nlp"): ("10.000000", "5.250000"),
        ("key", mine["id"]): ("2.000000", "1.250000"),
    }
    assert other["id"] not in r.text and mine["key"] not in r.text
    assert httpx.get(p.url + "/v1/meterline/usage", headers=ADMIN).status_code == 401


def test_a_key_issued_with_a_budget_is_refused_once_it_is_spent(p, api):
    capped = api.post("/admin/keys", json={"team": "web", "budget_usd_monthly": "0.000001"}).json()
    free = api.post("/admin/keys", json={"team": "web"}).json()
    chat(p, capped["key"])  # nothing spent yet: admitted, and it costs more than the budget
    with pytest.raises(openai.RateLimitError) as e:
        chat(p, capped["key"])
    assert e.value.body["code"] == "budget_exceeded" and capped["id"] in e.value.body["message"]
    assert chat(p, free["key"])  # the team has no budget: only that key is refused
