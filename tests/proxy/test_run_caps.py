"""Run caps: a runaway agent stopped at its run's cap, before the upstream, and kept stopped.

The agent is a loop as a stuck one runs: ask the LLM with a tool, get a tool call, hand back
its result, ask again, forever. No trace context: its turns join one run by continuation."""

from __future__ import annotations

import secrets
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import ADMIN_KEY

TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}}}]


def sent_upstream(upstream: Any, marker: str) -> int:
    return sum(1 for r in upstream.requests if r["path"] == "/v1/chat/completions" and marker in str(r.get("json")))


SAME_ARGS = [{"type": "function", "function": {"name": "status", "parameters": {"type": "object", "properties": {}}}}]


def run_loop(clients: list[openai.OpenAI], turns: int, marker: str, tools: list[Any] = TOOLS) -> tuple[list[str], openai.APIStatusError | None]:
    """Up to `turns` LLM calls of one stuck agent, alternating clients; the call ids admitted,
    and the refusal that stopped it. `sim:turns=` has the simulator ask for a tool every turn."""
    messages: list[Any] = [{"role": "user", "content": f"{marker} find it sim:turns=1000"}]
    ids: list[str] = []
    for i in range(turns):
        c = clients[i % len(clients)]
        try:
            raw = c.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=messages, tools=tools)
        except openai.APIStatusError as e:
            return ids, e
        ids.append(raw.headers["x-meterline-call-id"])
        tc = raw.parse().choices[0].message.tool_calls[0]
        messages += [
            {"role": "assistant", "content": None, "tool_calls": [tc.model_dump()]},
            {"role": "tool", "tool_call_id": tc.id, "content": "nothing found"},
        ]
    return ids, None


def client(proxy: Any, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy.url + "/v1", api_key=key, max_retries=2)


def test_a_looping_agent_is_refused_at_its_run_call_cap_and_the_upstream_sees_nothing_past_it(make_proxy, upstream):
    proxy = make_proxy(runs={"max_calls": 6})
    marker = "loop-" + secrets.token_hex(4)
    ids, refusal = run_loop([client(proxy, proxy.key("nlp"))], 20, marker)

    assert refusal is not None and refusal.status_code == 429
    assert refusal.body["code"] == "run_budget_exceeded" and refusal.body["type"] == "insufficient_quota"
    assert len(ids) == 6 and sent_upstream(upstream, marker) == 6  # the SDK did not retry it either
    events = proxy.events()
    run = {e["trace_id"] for e in events if e["call_id"] in ids}
    assert len(run) == 1
    rejected = [e for e in events if e["status"] == "rejected" and e["trace_id"] in run]
    assert len(rejected) == 1 and rejected[0]["error"].startswith("run capped:")
    # Reports and the admin API list it as capped, with what it had spent.
    proxy.flush()
    capped = httpx.get(proxy.url + "/admin/runs/capped", params={"month": events[0]["charge_period"]},
                       headers={"Authorization": f"Bearer {ADMIN_KEY}"}).json()["runs"]  # fmt: skip
    (only,) = capped
    assert only["trace_id"] in run and only["calls"] == 6 and only["refused"] == 1
    assert Decimal(only["cost_usd"]) == sum(Decimal(e["cost_pico"]) for e in events if e["trace_id"] in run) / 10**12
    assert "6 calls, its cap is 6" in only["why"] and only["team"] == "nlp"
    # Another task of the same key is a run of its own, and is served.
    fresh = client(proxy, proxy.key("nlp")).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert fresh.choices


def test_the_rest_of_a_capped_run_stays_refused(make_proxy, upstream):
    proxy = make_proxy(runs={"max_calls": 2})
    marker = "rest-" + secrets.token_hex(4)
    c = openai.OpenAI(base_url=proxy.url + "/v1", api_key=proxy.key("nlp"), max_retries=0)
    messages: list[Any] = [{"role": "user", "content": f"{marker} go sim:turns=100"}]
    for _ in range(2):
        tc = c.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=TOOLS).choices[0].message.tool_calls[0]
        messages += [
            {"role": "assistant", "content": None, "tool_calls": [tc.model_dump()]},
            {"role": "tool", "tool_call_id": tc.id, "content": "x"},
        ]
    for _ in range(3):  # the agent tries its next turn again and again: each is refused
        with pytest.raises(openai.RateLimitError) as refused:
            c.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=TOOLS)
        assert refused.value.body["code"] == "run_budget_exceeded"
    assert sent_upstream(upstream, marker) == 2
    rejected = [e for e in proxy.events() if e["status"] == "rejected"]
    assert len(rejected) == 3 and len({e["trace_id"] for e in rejected}) == 1


def test_a_run_past_its_cost_cap_spent_at_most_one_call_beyond_it(make_proxy, upstream):
    cap = Decimal("0.001")  # a few dozen turns of the simulator
    proxy = make_proxy(runs={"max_cost_usd": str(cap)})
    marker = "cost-" + secrets.token_hex(4)
    ids, refusal = run_loop([client(proxy, proxy.key("nlp"))], 200, marker)

    assert refusal is not None and refusal.body["code"] == "run_budget_exceeded"
    events = {e["call_id"]: e for e in proxy.events()}
    costs = [Decimal(events[i]["cost_pico"]) / 10**12 for i in ids]
    assert sum(costs) - cap <= max(costs)


def test_the_same_tool_asked_with_the_same_arguments_again_and_again_is_a_loop(make_proxy, upstream):
    proxy = make_proxy(runs={"max_repeats": 3})
    marker = "rep-" + secrets.token_hex(4)
    ids, refusal = run_loop([client(proxy, proxy.key("nlp"))], 20, marker, tools=SAME_ARGS)
    assert refusal is not None and "same tool with the same arguments" in refusal.body["message"]
    assert len(ids) == 3


def test_a_teams_own_caps_replace_the_defaults(make_proxy, upstream):
    proxy = make_proxy(runs={"max_calls": 3, "teams": {"web": {"max_calls": 5}}})
    _, nlp_refusal = run_loop([client(proxy, proxy.key("nlp"))], 10, "t-" + secrets.token_hex(4))
    web_ids, _ = run_loop([client(proxy, proxy.key("web"))], 10, "t-" + secrets.token_hex(4))
    assert nlp_refusal is not None and len(web_ids) == 5


@pytest.mark.parametrize("backend", ["postgresql"])
def test_two_replicas_stop_a_run_they_share_within_one_call_of_its_cap(make_proxy, upstream, postgres_url, tmp_path, backend):
    a = make_proxy(database=postgres_url, runs={"max_calls": 8})
    b = make_proxy(database=postgres_url, runs={"max_calls": 8}, server={"spool_dir": str(tmp_path / "spool-b")})
    key = a.key("nlp")
    b.app.state.runtime.keys.refresh()
    marker = "two-" + secrets.token_hex(4)
    ids, refusal = run_loop([client(a, key), client(b, key)], 30, marker)

    assert refusal is not None and refusal.body["code"] == "run_budget_exceeded"
    assert 8 <= len(ids) <= 9 and sent_upstream(upstream, marker) == len(ids)
    a.flush()
    events = {e["call_id"]: e for e in b.events()}
    assert len({events[i]["trace_id"] for i in ids}) == 1  # one run, across both replicas
