"""Overview: the figures shown are the reports' figures, and odd usage is flagged."""

from __future__ import annotations

from meterline.costing import Org
from meterline.dashboard.format import fixed, money
from meterline.reports import showback
from meterline.reports.overview import overview
from tests.dashboard.conftest import signed_in


def test_overview_shows_the_months_total_forecast_and_change_as_reports_compute_them(ledger):
    at = signed_in()
    sb = showback(ledger.engine, Org(ledger.settings), ledger.period)
    metrics = {m.label: m for m in at.metric}
    assert metrics["Month to date"].value == money(sb.total_usd) == "$6.11"
    assert metrics["Forecast to month-end"].value == money(sb.forecast_usd)
    assert metrics["vs last month"].value == money(sb.previous_total_usd) == "$3.00"
    assert metrics["Requests"].value == f"{sb.requests:,}"


def test_overview_top_teams_models_and_users_equal_the_report(ledger):
    at = signed_in()
    ov = overview(ledger.engine, Org(ledger.settings), ledger.period)
    teams, models, users = (at.dataframe[i].value for i in range(3))
    assert list(teams["team"]) == [t.label for t in ov.top_teams]
    assert list(teams["cost_usd"]) == [fixed(t.cost_usd) for t in ov.top_teams]
    assert teams["team"][0] == "web (Product)"
    assert list(models["model"]) == [m.name for m in ov.top_models]
    assert list(users["user"]) == [u.label for u in ov.top_users]
    assert list(users["cost_usd"]) == [fixed(u.cost_usd) for u in ov.top_users]


def test_overview_flags_unpriced_estimated_and_refused_usage(ledger):
    at = signed_in()
    text = " ".join(w.value for w in at.warning)
    assert "**1** requests have **no price**" in text
    assert "**1** requests have **estimated** usage ($0.42)" in text
    assert "**1** requests were **refused by a budget**" in text


def test_filters_narrow_the_overview_to_a_team_a_model_and_a_tag(ledger):
    at = signed_in()
    at.multiselect(key="f_department").set_value(["research"]).run()
    assert at.metric[0].value == "$1.82"  # research: 1.25 + 0.5 + 0.000001 + the agent run 0.065
    at.multiselect(key="f_team").set_value(["nlp"]).run()
    at.multiselect(key="f_model").set_value(["house-model"]).run()
    assert at.metric[0].value == "$0.50"
    at.multiselect(key="f_model").set_value([]).run()
    at.text_input(key="f_tags").set_value("env=prod").run()
    assert at.metric[0].value == "$1.25"
    assert not at.exception
