"""The command line: keys, exports and reports as a user runs them."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal

import openai
import yaml

from tests.conftest import base_config, run_cli


def _config(tmp_path, upstream):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(base_config(tmp_path, upstream.url)))
    return str(path)


def test_keys_create_list_revoke(tmp_path, upstream):
    cfg = _config(tmp_path, upstream)
    created = json.loads(run_cli("keys", "create", "--team", "nlp", "--name", "ci", "--json", "--config", cfg).stdout)
    assert set(created) >= {"id", "key", "team", "department"}
    assert (created["team"], created["department"]) == ("nlp", "research")
    listed = json.loads(run_cli("keys", "list", "--json", "--config", cfg).stdout)
    assert [k["id"] for k in listed] == [created["id"]]
    assert created["key"] not in json.dumps(listed)
    assert created["key"].startswith(listed[0]["prefix"])
    run_cli("keys", "revoke", created["id"], "--config", cfg)
    assert json.loads(run_cli("keys", "list", "--json", "--config", cfg).stdout)[0]["revoked"] is True


def test_keys_expire_rotate_and_list_by_department(tmp_path, upstream):
    cfg = _config(tmp_path, upstream)
    made = json.loads(run_cli("keys", "create", "--team", "web", "--expires", "2099-01-01", "--budget", "12.5", "--json", "--config", cfg).stdout)
    assert (made["expires_at"], made["budget_usd_monthly"], made["department"]) == ("2099-01-01T00:00:00Z", "12.500000", "product")
    run_cli("keys", "create", "--team", "nlp", "--config", cfg)
    table = run_cli("keys", "list", "--department", "product", "--config", cfg).stdout
    assert "EXPIRES" in table and "2099-01-01T00:00:00Z" in table and len(table.splitlines()) == 2
    rotated = json.loads(run_cli("keys", "rotate", made["id"], "--json", "--config", cfg).stdout)
    assert rotated["id"] == made["id"] and rotated["key"] != made["key"] and rotated["previous_key_valid_until"]
    listed = run_cli("keys", "list", "--team", "web", "--json", "--config", cfg).stdout
    assert made["key"] not in listed and rotated["key"] not in listed


def test_cli_errors_are_one_line_without_traceback(tmp_path, upstream):
    cfg = _config(tmp_path, upstream)
    cases = [
        ("keys", "create", "--team", "nope", "--config", cfg),
        ("keys", "revoke", "key_missing", "--config", cfg),
        ("keys", "rotate", "key_missing", "--config", cfg),
        ("keys", "create", "--team", "nlp", "--expires", "2001-01-01", "--config", cfg),
        ("keys", "create", "--team", "nlp", "--expires", "soon", "--config", cfg),
        ("keys", "create", "--team", "nlp", "--budget", "lots", "--config", cfg),
        ("keys", "list", "--department", "nope", "--config", cfg),
        ("export", "events", "--month", "2026-13", "--config", cfg),
        ("export", "events", "--month", "2026-11", "--format", "xml", "--config", cfg),
        ("report", "showback", "--month", "2026-11", "--config", str(tmp_path / "missing.yaml")),
    ]
    for args in cases:
        res = run_cli(*args, check=False)
        assert res.returncode != 0, args
        assert "Traceback" not in res.stderr
        assert len(res.stderr.strip().splitlines()) == 1, res.stderr


def test_bad_config_names_the_key_and_file(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("server:\n  max_body_bytes: lots\n")
    res = run_cli("keys", "list", "--config", str(path), check=False)
    assert res.returncode == 1
    assert str(path) in res.stderr and "server.max_body_bytes" in res.stderr


def test_exports_add_up_exactly(proxy):
    month = None
    for team in ("nlp", "vision", "web"):
        c = openai.OpenAI(base_url=proxy.url + "/v1", api_key=proxy.key(team), max_retries=0)
        for i in range(3):
            c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": f"q{i} " * (i + 1)}])
        c.embeddings.create(model="text-embedding-3-small", input="hello world")
    events = proxy.events()
    month = events[0]["ts"][:7] if isinstance(events[0]["ts"], str) else events[0]["ts"].strftime("%Y-%m")
    cfg = str(proxy.config_path)

    ev_csv = list(csv.DictReader(io.StringIO(run_cli("export", "events", "--month", month, "--config", cfg).stdout)))
    header = run_cli("export", "events", "--month", month, "--config", cfg).stdout.splitlines()[0]
    assert header.startswith(
        "call_id,ts,kind,status,department,team,project,user,key_id,provider,model,tool,input_tokens,"
        "cached_input_tokens,output_tokens,reasoning_tokens,cost_usd,usage_source,trace_id,parent_call_id"
    )
    assert len(ev_csv) == 12
    assert {r["kind"] for r in ev_csv} == {"llm", "embedding"}
    assert all(r["ts"].endswith("Z") for r in ev_csv)
    events_total = sum(Decimal(r["cost_usd"]) for r in ev_csv)
    jsonl = [json.loads(line) for line in run_cli("export", "events", "--month", month, "--format", "jsonl", "--config", cfg).stdout.splitlines()]
    assert sum(Decimal(r["cost_usd"]) for r in jsonl) == events_total

    out = proxy.config_path.parent / "cb.csv"
    run_cli("export", "chargeback", "--month", month, "--out", str(out), "--config", cfg)
    text = out.read_text()
    assert text.splitlines()[0].startswith(
        "period,department,cost_center,team,project,kind,provider,model,tool,requests,input_tokens,"
        "cached_input_tokens,output_tokens,reasoning_tokens,tool_calls,cost_usd,allocated_usd,markup_usd,charge_usd"
    )
    rows = list(csv.DictReader(io.StringIO(text)))
    assert sum(Decimal(r["cost_usd"]) for r in rows) == events_total.quantize(Decimal("0.000001"))
    assert sum(int(r["requests"]) for r in rows) == 12
    for r in rows:
        assert Decimal(r["charge_usd"]) == Decimal(r["cost_usd"]) + Decimal(r["allocated_usd"]) + Decimal(r["markup_usd"])
        assert len(r["charge_usd"].split(".")[1]) == 6

    show = json.loads(run_cli("report", "showback", "--month", month, "--json", "--config", cfg).stdout)
    assert Decimal(show["total_usd"]) == events_total
    assert {d["department"] for d in show["departments"]} == {"research", "product"}
    table = run_cli("report", "showback", "--month", month, "--config", cfg).stdout
    assert "Research" in table and "vision" in table
