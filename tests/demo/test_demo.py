"""`meterline demo` fills a ledger with a month of traffic that went through the real proxy."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from meterline.costing import create_engine, load_settings
from tests.conftest import run_cli


def test_demo_fills_a_month_of_several_departments_with_agent_runs_and_a_budget_hit(tmp_path):
    folder = tmp_path / "demo"
    res = run_cli("demo", "--no-dashboard", "--dir", str(folder), "--calls", "600")
    assert "refused by a budget" in res.stdout
    settings = load_settings(folder / "config.yaml")
    engine = create_engine(settings.database)
    month = datetime.now(UTC).strftime("%Y-%m")
    with engine.connect() as conn:
        q = lambda sql: conn.execute(sa.text(sql)).all()  # noqa: E731
        departments = {r[0] for r in q("SELECT DISTINCT department FROM events")}
        kinds = {r[0] for r in q("SELECT DISTINCT kind FROM events")}
        methods = {r[0] for r in q("SELECT DISTINCT method FROM events WHERE kind = 'llm'")}
        days = q("SELECT DISTINCT substr(CAST(ts AS TEXT), 1, 10) FROM events")
        periods = {r[0] for r in q("SELECT DISTINCT charge_period FROM events")}
        # LLM calls a tool made while serving a tool call, linked to it and charged to the caller.
        subcalls = q(
            "SELECT c.department, p.department, p.tool, c.key_team FROM events c JOIN events p ON c.parent_call_id = p.call_id "
            "WHERE p.kind = 'mcp' AND p.method = 'tools/call' AND c.kind = 'llm'"
        )
        rejected = q("SELECT team, http_status FROM events WHERE status = 'rejected'")
        estimated = q("SELECT count(*) FROM events WHERE usage_source = 'estimated'")[0][0]
        unpriced = q("SELECT count(*) FROM events WHERE NOT priced")[0][0]
    assert {"research", "product", "support", "finance"} <= departments
    assert kinds == {"llm", "embedding", "mcp"}
    assert {"/chat/completions", "/responses"} <= methods
    assert len(days) >= 20 and month in periods and len(periods) == 2
    assert subcalls and all(c == p and tool == "summarize" and team == "agents-infra" for c, p, tool, team in subcalls)
    assert rejected and all(status == 429 for _, status in rejected)
    assert estimated and unpriced


def test_demo_refuses_a_folder_it_did_not_make(tmp_path):
    mine = tmp_path / "config.yaml"
    mine.write_text("database: sqlite:///precious.db\n")
    res = run_cli("demo", "--no-dashboard", "--dir", str(tmp_path), "--calls", "50", check=False)
    assert res.returncode == 1 and "has files the demo did not make" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and mine.read_text() == "database: sqlite:///precious.db\n"
