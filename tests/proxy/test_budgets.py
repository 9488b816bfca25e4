"""Budgets through the real proxy: refusal before the upstream, the bound at the edge, alerts once."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, HTTPServer

import httpx
import openai
import pytest
import sqlalchemy as sa

from meterline.costing import create_engine, create_key, create_schema
from meterline.proxy.llm import _max_output_tokens
from tests.conftest import ADMIN_KEY, free_port

IN, OUT = Decimal("0.15") / 10**6, Decimal("0.60") / 10**6  # gpt-4o-mini per token in the test config
# The simulator answers a one-word chat message with 1 + 4 prompt tokens and 16 completion tokens.
ONE_CALL = 5 * IN + 16 * OUT


def client(proxy, key):
    return openai.OpenAI(base_url=proxy.url + "/v1", api_key=key, max_retries=0)


def ask(c):
    return c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "edge"}])


def departments(team_budget=None, dept_budget=None):
    nlp = {"id": "nlp"} | ({"budget_usd_monthly": str(team_budget)} if team_budget is not None else {})
    research = {"id": "research", "name": "Research", "cost_center": "CC-100", "teams": [nlp, {"id": "vision"}]}
    if dept_budget is not None:
        research["budget_usd_monthly"] = str(dept_budget)
    return [research, {"id": "product", "name": "Product", "cost_center": "CC-200", "teams": [{"id": "web"}]}]


def cost(event):
    return Decimal(event["cost_pico"]) / 10**12


def chat_requests(upstream):
    return sum(1 for r in upstream.requests if r["path"] == "/v1/chat/completions")


def test_a_team_over_budget_is_refused_before_the_upstream_and_the_refusal_is_recorded(make_proxy, upstream):
    proxy = make_proxy(departments=departments(team_budget=ONE_CALL / 2), budgets={"refresh_seconds": 0.1})
    c = client(proxy, proxy.key("nlp"))
    ask(c)  # room left: admitted, and it spends more than the budget
    before = chat_requests(upstream)
    with pytest.raises(openai.RateLimitError) as err:
        ask(c)
    assert chat_requests(upstream) == before
    body = err.value.body
    assert (err.value.status_code, body["code"], body["type"]) == (429, "budget_exceeded", "insufficient_quota")
    assert "team 'nlp'" in body["message"]
    ok, rejected = proxy.events()
    assert (ok["status"], cost(ok)) == ("ok", ONE_CALL)
    assert (rejected["status"], rejected["http_status"], rejected["cost_pico"]) == ("rejected", 429, 0)
    assert (rejected["team"], rejected["model"]) == ("nlp", "gpt-4o-mini")
    # Other teams of the department are not held back by nlp's budget.
    ask(client(proxy, proxy.key("vision")))


def test_a_department_budget_holds_for_all_its_teams(make_proxy, upstream):
    proxy = make_proxy(departments=departments(dept_budget=0), budgets={"refresh_seconds": 0.1})
    before = chat_requests(upstream)
    for team in ("nlp", "vision"):
        with pytest.raises(openai.RateLimitError):
            ask(client(proxy, proxy.key(team)))
    assert chat_requests(upstream) == before
    ask(client(proxy, proxy.key("web")))


def test_a_key_budget_refuses_only_that_key(make_proxy, upstream, tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    create_schema(engine)
    row, capped = create_key(engine, team="nlp")
    engine.dispose()
    proxy = make_proxy(budgets={"keys": {row.id: "0"}, "refresh_seconds": 0.1})
    proxy.app.state.runtime.keys.refresh()
    with pytest.raises(openai.RateLimitError) as err:
        ask(client(proxy, capped))
    assert "key" in err.value.body["message"]
    ask(client(proxy, proxy.key("nlp")))


def test_parallel_calls_at_the_budget_edge_overspend_less_than_one_call(make_proxy, upstream):
    budget = ONE_CALL * Decimal("5.5")
    proxy = make_proxy(departments=departments(team_budget=budget), budgets={"refresh_seconds": 0.05})
    for _ in range(3):  # vision has no budget; its calls teach the estimate this model's output size
        ask(client(proxy, proxy.key("vision")))
    c = client(proxy, proxy.key("nlp"))
    before = chat_requests(upstream)

    def one(_):
        try:
            ask(c)
            return "ok"
        except openai.RateLimitError:
            return "refused"

    with ThreadPoolExecutor(20) as pool:
        outcomes = list(pool.map(one, range(20)))
    events = [e for e in proxy.events() if e["team"] == "nlp"]
    spent = sum((cost(e) for e in events), Decimal(0))
    admitted = outcomes.count("ok")
    # Each admitted call found spend plus reservations (estimates >= its cost) under the budget,
    # so the last one admitted started below it: the overspend is under one call in flight.
    assert spent < budget + ONE_CALL
    assert admitted <= 6 and outcomes.count("refused") == 20 - admitted >= 14
    assert chat_requests(upstream) - before == admitted
    assert sorted(e["status"] for e in events) == ["ok"] * admitted + ["rejected"] * (20 - admitted)


class _Hook(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self):  # noqa: N802 - http.server's name
        n = int(self.headers["content-length"])
        self.received.append(json.loads(self.rfile.read(n)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook():
    _Hook.received = []
    server = HTTPServer(("127.0.0.1", free_port()), _Hook)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.server_port}/alerts", _Hook.received
    server.shutdown()
    server.server_close()


def wait_for(check, what):
    deadline = time.monotonic() + 10
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.05)


def test_soft_threshold_alerts_once_with_a_note_a_log_line_and_the_webhook(make_proxy, webhook, caplog):
    url, received = webhook
    proxy = make_proxy(
        departments=departments(team_budget=ONE_CALL * 10),
        budgets={"soft_threshold_percent": 50, "webhook_url": url, "refresh_seconds": 0.05},
    )
    c = client(proxy, proxy.key("nlp"))
    with caplog.at_level("WARNING", logger="meterline.budgets"):
        for _ in range(8):  # crosses 50% at the fifth call, then stays above it
            ask(c)
        wait_for(lambda: received, "the webhook was called")
        proxy.flush()
        time.sleep(0.3)  # a few more refreshes, which must not alert again
    assert len(received) == 1
    assert received[0]["kind"] == "budget_soft" and (received[0]["scope"], received[0]["id"]) == ("team", "nlp")
    assert Decimal(received[0]["spent_usd"]) >= ONE_CALL * 5
    with proxy.engine.connect() as conn:
        notes = conn.execute(sa.text("SELECT kind, subject FROM notes")).all()
    assert notes == [("budget_soft", "team:nlp")]
    assert len([r for r in caplog.records if "budget alert" in r.getMessage()]) == 1


def test_budget_refusals_show_in_the_admin_chargeback_as_zero_cost_calls(make_proxy):
    proxy = make_proxy(departments=departments(team_budget=0), budgets={"refresh_seconds": 0.1})
    with pytest.raises(openai.RateLimitError):
        ask(client(proxy, proxy.key("nlp")))
    (event,) = proxy.events()
    month = event["ts"].strftime("%Y-%m") if hasattr(event["ts"], "strftime") else event["ts"][:7]
    r = httpx.get(proxy.url + "/admin/reports/chargeback", params={"month": month}, headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert r.status_code == 200
    (line,) = r.json()["lines"]
    assert (line["team"], line["requests"], line["cost_usd"]) == ("nlp", 1, "0.000000")


@pytest.mark.parametrize(
    ("fields", "cap"),
    [({"max_tokens": 64}, 64), ({"max_completion_tokens": 32, "max_tokens": 64}, 32), ({"max_output_tokens": 16}, 16),
     ({"max_tokens": 0}, 0), ({"max_tokens": "64"}, 0), ({"max_tokens": True}, 0), ({}, 0)],
)  # fmt: skip
def test_the_output_cap_is_read_from_each_api_s_field(fields, cap):
    assert _max_output_tokens({"model": "m", **fields}) == cap
