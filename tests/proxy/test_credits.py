"""Credit grants through the real proxy: drawn before the budget, entitlements, recurring
grants across a month's turn (the clock seam), expiry to the second, the admin API."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import openai
import pytest
import sqlalchemy as sa

from tests.conftest import ADMIN_KEY

IN, OUT = Decimal("0.15") / 10**6, Decimal("0.60") / 10**6  # gpt-4o-mini per token in the test config
ONE_CALL = 5 * IN + 16 * OUT  # the simulator's usage for a one-word chat message
CALL = ONE_CALL * 10_000  # at the prices of the agreement test
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


class Clock:
    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def departments(**nlp_extra):
    nlp = {"id": "nlp", **nlp_extra}
    return [
        {"id": "research", "name": "Research", "cost_center": "CC-100", "teams": [nlp, {"id": "vision"}]},
        {"id": "product", "name": "Product", "cost_center": "CC-200", "teams": [{"id": "web"}]},
    ]


def client(proxy, key):
    return openai.OpenAI(base_url=proxy.url + "/v1", api_key=key, max_retries=0)


def ask(c):
    return c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "edge"}])


def chat_requests(upstream):
    return sum(1 for r in upstream.requests if r["path"] == "/v1/chat/completions")


def settle(proxy):
    """Everything recorded is in the ledger, and credits and budgets have re-read it."""
    proxy.flush()
    rt = proxy.app.state.runtime
    rt.credits.refresh()
    rt.budgets.refresh()


def chargeback(proxy, month):
    r = httpx.get(f"{proxy.url}/admin/exports/chargeback", params={"month": month, "format": "csv"}, headers=ADMIN)
    r.raise_for_status()
    return list(csv.DictReader(io.StringIO(r.text)))


def team_sum(rows, team, column):
    return sum((Decimal(r[column]) for r in rows if r["team"] == team), Decimal(0))


def use_clock(proxy, at: datetime) -> Clock:
    clock = Clock(at)
    rt = proxy.app.state.runtime
    rt.meter.clock = clock
    rt.credits.now = clock
    rt.budgets.now = clock
    return clock


def test_a_grant_is_drawn_first_and_the_budget_limits_what_is_billed_beyond_it(make_proxy, upstream):
    month = datetime.now(UTC).strftime("%Y-%m")
    grant = {"id": "nlp-start", "team": "nlp", "amount_usd": str(3 * ONE_CALL), "effective_from": f"{month}-01"}
    proxy = make_proxy(departments=departments(budget_usd_monthly=str(2 * ONE_CALL)), credits=[grant], budgets={"refresh_seconds": 60})
    c = client(proxy, proxy.key("nlp"))
    for _ in range(3):
        ask(c)
        settle(proxy)
    rows = chargeback(proxy, month)
    assert team_sum(rows, "nlp", "charge_usd") == (3 * ONE_CALL).quantize(Decimal("0.000001"))
    assert team_sum(rows, "nlp", "credit_usd") == team_sum(rows, "nlp", "charge_usd")
    assert team_sum(rows, "nlp", "billed_usd") == 0  # charged nothing while the grant lasts
    for _ in range(2):  # then the budget: two calls' worth billed
        ask(c)
        settle(proxy)
    before = chat_requests(upstream)
    with pytest.raises(openai.RateLimitError) as err:
        ask(c)
    assert err.value.body["code"] == "budget_exceeded"
    assert chat_requests(upstream) == before
    rows = chargeback(proxy, month)
    assert team_sum(rows, "nlp", "credit_usd") == (3 * ONE_CALL).quantize(Decimal("0.000001"))
    assert team_sum(rows, "nlp", "billed_usd") == team_sum(rows, "nlp", "charge_usd") - team_sum(rows, "nlp", "credit_usd")
    assert team_sum(rows, "nlp", "billed_usd") > 0
    listed = httpx.get(f"{proxy.url}/admin/credits", params={"team": "nlp"}, headers=ADMIN).json()
    (g,) = listed["data"]
    assert (g["id"], g["source"], g["status"]) == ("nlp-start", "config", "active")
    assert Decimal(g["drawn_usd"]) == 3 * ONE_CALL and Decimal(g["balance_usd"]) == 0


def test_a_team_that_requires_credits_is_refused_once_empty_before_the_upstream(make_proxy, upstream):
    proxy = make_proxy(departments=departments(require_credits=True), budgets={"refresh_seconds": 60})
    c = client(proxy, proxy.key("nlp"))
    before = chat_requests(upstream)
    with pytest.raises(openai.RateLimitError) as err:  # no grant yet
        ask(c)
    body = err.value.body
    assert (err.value.status_code, body["code"], body["type"]) == (429, "credits_exhausted", "insufficient_quota")
    assert chat_requests(upstream) == before
    made = httpx.post(
        f"{proxy.url}/admin/credits", headers=ADMIN,
        json={"id": "nlp-trial", "team": "nlp", "amount_usd": str(2 * ONE_CALL), "effective_from": "2020-01-01T00:00:00Z"},
    )  # fmt: skip
    assert made.status_code == 201, made.text
    assert (Decimal(made.json()["balance_usd"]), made.json()["status"]) == (2 * ONE_CALL, "active")
    settle(proxy)
    ask(c)  # no refresh in between: the accountant counts what this process recorded
    ask(c)
    before = chat_requests(upstream)
    with pytest.raises(openai.RateLimitError) as err:
        ask(c)
    assert err.value.body["code"] == "credits_exhausted"
    assert chat_requests(upstream) == before
    ask(client(proxy, proxy.key("vision")))  # the rest of the department does not need credits
    events = [e for e in proxy.events() if e["team"] == "nlp"]
    assert [e["status"] for e in events] == ["rejected", "ok", "ok", "rejected"]
    assert {e["cost_pico"] for e in events if e["status"] == "rejected"} == {0}
    assert {e["http_status"] for e in events if e["status"] == "rejected"} == {429}
    detail = httpx.get(f"{proxy.url}/admin/credits/nlp-trial", headers=ADMIN).json()
    assert Decimal(detail["drawn_usd"]) == 2 * ONE_CALL and Decimal(detail["balance_usd"]) == 0
    assert sum(Decimal(d["drawn_usd"]) for d in detail["days"]) == 2 * ONE_CALL


def test_a_recurring_grant_rolls_over_when_the_month_turns(make_proxy, upstream):
    grant = {
        "id": "nlp-monthly", "team": "nlp", "amount_usd": str(2 * ONE_CALL), "effective_from": "2026-10-01",
        "recurring": "monthly", "rollover_max_usd": str(ONE_CALL * Decimal("1.5")),
    }  # fmt: skip
    proxy = make_proxy(departments=departments(require_credits=True), credits=[grant], budgets={"refresh_seconds": 60})
    clock = use_clock(proxy, datetime(2026, 10, 31, 23, 0, tzinfo=UTC))
    c = client(proxy, proxy.key("nlp"))
    settle(proxy)
    ask(c)  # October: one of two calls' worth drawn, one left to roll over
    settle(proxy)
    clock.now = datetime(2026, 11, 1, 0, 30, tzinfo=UTC)
    settle(proxy)  # the month has turned: November's grant plus October's rest
    for _ in range(3):
        ask(c)
    with pytest.raises(openai.RateLimitError) as err:
        ask(c)
    assert err.value.body["code"] == "credits_exhausted"
    settle(proxy)
    detail = httpx.get(f"{proxy.url}/admin/credits/nlp-monthly", headers=ADMIN).json()
    october, november = detail["instances"]
    assert (october["period"], Decimal(october["drawn_usd"]), Decimal(october["remaining_usd"])) == ("2026-10", ONE_CALL, ONE_CALL)
    assert (november["period"], Decimal(november["carried_usd"])) == ("2026-11", ONE_CALL)
    assert Decimal(november["drawn_usd"]) == 3 * ONE_CALL and Decimal(november["remaining_usd"]) == 0
    assert Decimal(detail["granted_usd"]) == 4 * ONE_CALL  # two months of it: a rollover is no new credit
    rows = chargeback(proxy, "2026-11")
    assert team_sum(rows, "nlp", "credit_usd") == (3 * ONE_CALL).quantize(Decimal("0.000001"))
    assert team_sum(rows, "nlp", "billed_usd") == 0


def test_a_grant_stops_at_its_expiry_to_the_second_and_at_its_revocation(make_proxy, upstream):
    proxy = make_proxy(departments=departments(), budgets={"refresh_seconds": 60})
    clock = use_clock(proxy, datetime(2026, 11, 10, 12, 0, 10, tzinfo=UTC))
    expires = datetime(2026, 11, 10, 12, 0, 30, tzinfo=UTC)
    made = httpx.post(
        f"{proxy.url}/admin/credits", headers=ADMIN,
        json={"team": "nlp", "amount_usd": "1", "effective_from": "2026-11-10T12:00:00Z", "expires": expires.isoformat()},
    )  # fmt: skip
    assert made.status_code == 201, made.text
    c = client(proxy, proxy.key("nlp"))
    ask(c)  # 12:00:10, drawn
    clock.now = expires - timedelta(seconds=1)
    ask(c)  # 12:00:29, drawn
    clock.now = expires
    ask(c)  # 12:00:30, the grant no longer counts
    settle(proxy)
    g = httpx.get(f"{proxy.url}/admin/credits/{made.json()['id']}", headers=ADMIN).json()
    assert g["status"] == "expired" and Decimal(g["drawn_usd"]) == 2 * ONE_CALL
    rows = chargeback(proxy, "2026-11")
    assert team_sum(rows, "nlp", "credit_usd") == (2 * ONE_CALL).quantize(Decimal("0.000001"))

    revocable = httpx.post(f"{proxy.url}/admin/credits", headers=ADMIN, json={"team": "vision", "amount_usd": "1", "priority": 1}).json()
    assert revocable["effective_from"] == "2026-11-10T12:00:30Z"  # now, on the proxy's clock
    v = client(proxy, proxy.key("vision"))
    ask(v)
    clock.now += timedelta(seconds=5)
    gone = httpx.delete(f"{proxy.url}/admin/credits/{revocable['id']}", headers=ADMIN)
    assert gone.json()["status"] == "revoked" and gone.json()["revoked_at"] == "2026-11-10T12:00:35Z"
    ask(v)
    settle(proxy)
    rows = chargeback(proxy, "2026-11")
    assert team_sum(rows, "vision", "credit_usd") == ONE_CALL.quantize(Decimal("0.000001"))
    assert httpx.delete(f"{proxy.url}/admin/credits/nope", headers=ADMIN).status_code == 404


def test_grants_are_checked_when_made(make_proxy, upstream):
    proxy = make_proxy(credits=[{"id": "cfg", "department": "research", "amount_usd": "5", "effective_from": "2026-01-01"}])
    post = lambda body: httpx.post(f"{proxy.url}/admin/credits", headers=ADMIN, json=body)  # noqa: E731
    bad = post({"team": "nobody", "amount_usd": "1"})
    assert (bad.status_code, bad.json()["error"]["param"]) == (400, "team")
    assert post({"team": "nlp", "department": "research", "amount_usd": "1"}).status_code == 400
    assert post({"team": "nlp", "amount_usd": "1", "rollover_max_usd": "1"}).json()["error"]["param"] == "rollover_max_usd"
    assert post({"id": "cfg", "team": "nlp", "amount_usd": "1"}).json()["error"]["param"] == "id"
    assert post({"team": "nlp", "amount_usd": "-1"}).status_code == 400
    gone = httpx.delete(f"{proxy.url}/admin/credits/cfg", headers=ADMIN)
    assert (gone.status_code, gone.json()["error"]["code"]) == (409, "grant_in_config")
    listed = httpx.get(f"{proxy.url}/admin/credits", params={"department": "research"}, headers=ADMIN).json()
    assert [g["id"] for g in listed["data"]] == ["cfg"] and listed["balance_usd"] == "5.000000"


def test_chargeback_focus_statement_and_admin_api_agree_to_the_cent(make_proxy, upstream, tmp_path):
    prices = [{"model": "gpt-4o-mini", "input_per_mtok": "1500", "output_per_mtok": "6000"}]  # cents per call
    credits = [
        {"id": "research-pool", "department": "research", "amount_usd": str(5 * CALL), "effective_from": "2026-11-01", "priority": 1},
        {"id": "nlp-own", "team": "nlp", "amount_usd": str(2 * CALL), "effective_from": "2026-11-01", "expires": "2026-12-01"},
    ]  # fmt: skip
    proxy = make_proxy(prices=prices, departments=departments(), credits=credits, chargeback={"markup_percent": {"research": "10"}}, budgets={"refresh_seconds": 60})
    use_clock(proxy, datetime(2026, 11, 12, 9, 0, tzinfo=UTC))
    for team, n in (("nlp", 4), ("vision", 3), ("web", 2)):
        c = client(proxy, proxy.key(team))
        for _ in range(n):
            ask(c)
    settle(proxy)
    month = "2026-11"
    lines = chargeback(proxy, month)
    get = lambda path, **q: httpx.get(f"{proxy.url}{path}", params=q, headers=ADMIN)  # noqa: E731
    focus = list(csv.DictReader(io.StringIO(get("/admin/exports/chargeback", month=month, format="focus").text)))
    report = get("/admin/reports/chargeback", month=month).json()
    grants = get("/admin/credits").json()["data"]
    html = proxy_statement(proxy, month, "research")

    credited = sum(Decimal(r["credit_usd"]) for r in lines)
    # nlp's own grant first (it ends first), then the department's pool for the rest: 7 calls'
    # worth of credit for 7 research calls; web has none.
    assert credited == (7 * CALL).quantize(Decimal("0.000001"))
    assert sum(Decimal(g["drawn_usd"]) for g in grants) == 7 * CALL
    assert {g["id"]: Decimal(g["drawn_usd"]) for g in grants} == {"nlp-own": 2 * CALL, "research-pool": 5 * CALL}
    assert -sum(Decimal(r["BilledCost"]) for r in focus if r["ChargeCategory"] == "Credit") == credited
    assert sum(Decimal(r["BilledCost"]) for r in focus) == sum(Decimal(r["billed_usd"]) for r in lines)
    research = next(d for d in report["departments"] if d["department"] == "research")
    assert Decimal(research["credit_usd"]) == credited
    billed = sum(Decimal(r["billed_usd"]) for r in lines if r["department"] == "research")
    assert Decimal(research["billed"]) == billed.quantize(Decimal("0.01"))  # only the markup is billed
    assert f"Total USD</td><td class=\"num\">{Decimal(research['billed']):,.2f}" in html
    assert f"-{credited.quantize(Decimal('0.01')):,.2f}" in html


def proxy_statement(proxy, month, department):
    from tests.conftest import run_cli

    return run_cli("export", "statement", "--month", month, "--department", department, "--format", "html", "--config", str(proxy.config_path)).stdout


def test_a_balance_below_a_threshold_is_alerted_once_per_threshold_and_month(make_proxy, upstream, caplog):
    import threading
    from http.server import HTTPServer

    from tests.conftest import free_port
    from tests.proxy.test_budgets import _Hook

    _Hook.received = []
    server = HTTPServer(("127.0.0.1", free_port()), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        grant = {"id": "nlp-alerted", "team": "nlp", "amount_usd": str(2 * ONE_CALL), "effective_from": "2026-11-01"}
        thresholds = [str(ONE_CALL * Decimal("1.5")), str(ONE_CALL / 2)]
        proxy = make_proxy(
            departments=departments(credit_alerts_usd=thresholds), credits=[grant],
            budgets={"refresh_seconds": 60, "webhook_url": f"http://127.0.0.1:{server.server_port}/hook"},
        )  # fmt: skip
        use_clock(proxy, datetime(2026, 11, 3, 8, tzinfo=UTC))
        c = client(proxy, proxy.key("nlp"))
        caplog.set_level("WARNING", logger="meterline.credits")
        settle(proxy)
        assert _Hook.received == []  # a full balance is above both
        for _ in range(3):
            ask(c)
            settle(proxy)
            settle(proxy)  # a second refresh finds the same balance: no second alert
        got = sorted((h["kind"], Decimal(h["threshold_usd"]), Decimal(h["balance_usd"])) for h in _Hook.received)
        assert got == [("credit_low", ONE_CALL / 2, Decimal(0)), ("credit_low", ONE_CALL * Decimal("1.5"), ONE_CALL)]
        assert {h["id"] for h in _Hook.received} == {"nlp"} and {h["period"] for h in _Hook.received} == {"2026-11"}
        assert len([r for r in caplog.records if "credit alert" in r.getMessage()]) == 2
        with proxy.engine.connect() as conn:
            notes = conn.execute(sa.text("SELECT subject, period FROM notes WHERE kind = 'credit_low'")).all()
        assert sorted(n[1] for n in notes) == ["2026-11", "2026-11"] and len({n[0] for n in notes}) == 2
    finally:
        server.shutdown()
        server.server_close()
