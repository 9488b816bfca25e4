"""`meterline demo` fills a ledger with a month of traffic that went through the real proxy,
shaped like a company's, and the dashboard opens on a full picture on the 1st and the 20th."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import sqlalchemy as sa
from streamlit.testing.v1 import AppTest

from meterline.costing import create_engine, load_settings
from meterline.dashboard import APP_PATH
from meterline.reports.trend import previous_period
from tests.conftest import proxy_environ, run_cli

FIRST = datetime.now(UTC).replace(day=1, hour=9, minute=0, second=0, microsecond=0)
TWENTIETH = FIRST.replace(day=20, hour=15)


def demo(tmp_path, now: datetime, calls: int = 600):
    """Run `meterline demo` (minutes on a busy machine: longer than run_cli waits)."""
    folder = tmp_path / "demo"
    res = subprocess.run(
        [sys.executable, "-m", "meterline", "demo", "--no-dashboard", "--dir", str(folder), "--calls", str(calls), "--now", now.isoformat()],
        capture_output=True, text=True, env={**os.environ, **proxy_environ()}, timeout=900, check=True,
    )  # fmt: skip
    engine = create_engine(load_settings(folder / "config.yaml").database)
    return folder, res, engine


def dashboard(folder, now: datetime, monkeypatch) -> AppTest:
    monkeypatch.setenv("METERLINE_CONFIG", str(folder / "config.yaml"))
    monkeypatch.setenv("METERLINE_DASHBOARD_PASSWORD", "demo-pw")
    monkeypatch.setattr(sys, "argv", [sys.argv[0], "--now", now.isoformat()])
    at = AppTest.from_file(str(APP_PATH), default_timeout=60).run()
    at.text_input(key="login_password").set_value("demo-pw")
    at.button[0].click().run()
    assert not at.exception, at.exception
    return at


def test_demo_on_the_1st_fills_a_month_like_a_companys_and_the_dashboard_opens_on_it(tmp_path, monkeypatch):
    folder, res, engine = demo(tmp_path, FIRST)
    month, last = FIRST.strftime("%Y-%m"), previous_period(FIRST.strftime("%Y-%m"))
    with engine.connect() as conn:
        q = lambda sql, **kw: conn.execute(sa.text(sql), kw).all()  # noqa: E731
        departments = {r[0] for r in q("SELECT DISTINCT department FROM events")}
        kinds = {r[0] for r in q("SELECT DISTINCT kind FROM events")}
        methods = {r[0] for r in q("SELECT DISTINCT method FROM events WHERE kind = 'llm'")}
        days = q("SELECT DISTINCT substr(CAST(ts AS TEXT), 1, 10) FROM events")
        periods = {r[0] for r in q("SELECT DISTINCT charge_period FROM events")}
        subcalls = q(
            "SELECT c.department, p.department, p.tool, c.key_team FROM events c JOIN events p ON c.parent_call_id = p.call_id "
            "WHERE p.kind = 'mcp' AND p.method = 'tools/call' AND c.kind = 'llm'"
        )
        tokens = q("SELECT sum(input_tokens), sum(cached_input_tokens), sum(output_tokens), sum(reasoning_tokens) FROM events")[0]
        thinking = {r[0] for r in q("SELECT DISTINCT model FROM events WHERE reasoning_tokens > 0")}
        rejected = q("SELECT team, charge_period, CAST(ts AS TEXT), http_status FROM events WHERE status = 'rejected' ORDER BY ts")
        total, = q("SELECT count(*) FROM events")[0]
        # Helpdesk's month passes its budget by less than one call, the budgets' bound. (A call
        # may still be admitted after a refusal: one is refused while the calls in flight hold
        # more than they turn out to cost, and a call that fits once they settle goes through.)
        spent, largest = q("SELECT coalesce(sum(cost_pico), 0), coalesce(max(cost_pico), 0) FROM events "
                           "WHERE team = 'helpdesk' AND charge_period = :p", p=last)[0]  # fmt: skip
        budget = next(t.budget_usd_monthly for d in load_settings(folder / "config.yaml").departments for t in d.teams if t.id == "helpdesk")
    assert {"research", "product", "support", "finance"} <= departments
    assert kinds == {"llm", "embedding", "mcp"} and {"/chat/completions", "/responses"} <= methods
    assert len(days) >= 28 and periods == {month, last}
    assert subcalls and all(c == p and tool == "summarize" and team == "agents-infra" for c, p, tool, team in subcalls)
    inp, cached, out, reasoning = tokens
    assert inp > 5 * out and cached > inp / 10 and 0 < reasoning < out  # a company's mix
    assert thinking == {"o4-mini"}
    # Helpdesk passes its budget once, in the last days of last month, and is refused from then on.
    assert rejected and {(t, p) for t, p, _, _ in rejected} == {("helpdesk", last)}
    assert int(rejected[0][2][8:10]) >= 24 and all(s == 429 for *_, s in rejected)
    assert budget is not None and Decimal(spent - largest) / 10**12 < budget
    # What the demo says is what the ledger holds.
    said = re.search(r"the ledger holds ([\d,]+) calls, ([\d,]+) of them refused by a budget", res.stdout)
    assert said and (int(said[1].replace(",", "")), int(said[2].replace(",", ""))) == (total, len(rejected))
    # Its warnings: one line each, the soft threshold before the refusal, both naming last month.
    alerts = [ln for ln in res.stdout.splitlines() + res.stderr.splitlines() if "budget alert: team 'helpdesk'" in ln]
    assert len(alerts) == 2 and "soft threshold" in alerts[0] and "refused" in alerts[1] and all(last in a for a in alerts)
    assert not any(ln.startswith(" ") and "USD" in ln for ln in res.stderr.splitlines())  # nothing wrapped

    at = dashboard(folder, FIRST, monkeypatch)
    assert at.selectbox(key="f_month").value == last  # 9 hours of this month: last month's picture
    assert any(f"Showing {last}" in c.value for c in at.sidebar.caption)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Month total"] not in ("$0.00", "–") and metrics["vs last month"] == "–"
    at.switch_page("pages/budgets.py").run()
    assert any("Helpdesk (team, Customer Support)" in w.value and "over its budget" in w.value for w in at.warning)


def test_demo_on_the_20th_shows_the_month_so_far_with_a_forecast(tmp_path, monkeypatch):
    folder, _, engine = demo(tmp_path, TWENTIETH, calls=400)
    at = dashboard(folder, TWENTIETH, monkeypatch)
    assert at.selectbox(key="f_month").value == TWENTIETH.strftime("%Y-%m")
    metrics = {m.label: m for m in at.metric}
    assert metrics["Month to date"].value.startswith("$") and metrics["Forecast to month-end"].value.startswith("$")
    assert metrics["vs same days last month"].value.startswith("$") and metrics["vs same days last month"].delta
    assert not at.exception and not at.error


def test_demo_refuses_a_folder_it_did_not_make(tmp_path):
    mine = tmp_path / "config.yaml"
    mine.write_text("database: sqlite:///precious.db\n")
    res = run_cli("demo", "--no-dashboard", "--dir", str(tmp_path), "--calls", "50", check=False)
    assert res.returncode == 1 and "has files the demo did not make" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and mine.read_text() == "database: sqlite:///precious.db\n"


@pytest.mark.parametrize("when", ["yesterday", "2026-13-01"])
def test_demo_says_in_one_line_when_its_clock_is_not_a_time(tmp_path, when):
    res = run_cli("demo", "--no-dashboard", "--dir", str(tmp_path / "d"), "--now", when, check=False)
    assert res.returncode == 1 and len(res.stderr.strip().splitlines()) == 1 and "--now" in res.stderr


def test_demo_checks_the_dashboard_port_before_it_prints_a_url_or_a_password(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        res = run_cli("demo", "--dir", str(tmp_path / "d"), "--calls", "50", "--port", str(port), check=False)
    assert res.returncode == 1 and f"port {port} is taken" in res.stderr
    assert "password" not in res.stdout and "http://" not in res.stdout
