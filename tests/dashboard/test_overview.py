"""Overview: the figures shown are the reports' figures, read as people read them."""

from __future__ import annotations

from datetime import timedelta

from meterline.costing import Org
from meterline.dashboard.format import money
from meterline.reports import showback
from meterline.reports.overview import overview
from tests.dashboard.conftest import NOW, cells, labels, signed_in


def test_overview_shows_the_months_total_forecast_and_change_as_reports_compute_them(ledger):
    at = signed_in()
    sb = showback(ledger.engine, Org(ledger.settings), ledger.period, now=NOW)
    ov = overview(ledger.engine, Org(ledger.settings), ledger.period, now=NOW)
    metrics = {m.label: m for m in at.metric}
    assert metrics["Month to date"].value == money(sb.total_usd) == "$6.11"
    assert metrics["Forecast to month-end"].value == money(ov.forecast_usd) == money(sb.forecast_usd)
    # Last month's only spend before its 20th (its 3rd and 4th): the same stretch as this one.
    assert metrics["vs same days last month"].value == money(ov.compare_usd) == "$3.00"
    assert metrics["vs same days last month"].delta == f"{ov.change_percent:+}%"
    assert metrics["Requests"].value == f"{sb.requests:,}"


def test_the_open_month_is_compared_with_the_same_days_of_the_month_before(ledger):
    early = NOW.replace(day=2, hour=12)  # last month's spend (its 3rd and 4th) is later than this
    ov = overview(ledger.engine, Org(ledger.settings), ledger.period, now=early)
    assert ov.compare_until == (NOW.replace(day=1, hour=0) - timedelta(days=1)).replace(day=2, hour=12)
    assert ov.compare_usd == 0 and ov.previous_total_usd == 3 and ov.change_percent is None
    assert ov.forecast_usd is None  # before seven days of data


def test_overview_tables_have_human_labels_currency_and_separators(ledger):
    at = signed_in()
    ov = overview(ledger.engine, Org(ledger.settings), ledger.period, now=NOW)
    assert labels(at, 0) == ["Team", "Requests", "Input tokens", "Output tokens", "Cost"]
    teams = cells(at, 0)
    assert [t["Team"] for t in teams] == [t.label for t in ov.top_teams]
    assert teams[0]["Team"] == "web (Product)" and teams[0]["Cost"] == "$3.52"
    assert [t["Cost"] for t in teams] == [money(t.cost_usd) for t in ov.top_teams]
    assert teams[0]["Input tokens"] == f"{ov.top_teams[0].input_tokens:,}" == "5,200"
    assert [m["Model"] for m in cells(at, 1)] == [m.name for m in ov.top_models]
    assert [u["User"] for u in cells(at, 2)] == [u.label for u in ov.top_users]


def test_overview_flags_unpriced_estimated_and_refused_usage(ledger):
    at = signed_in()
    text = " ".join(w.value for w in at.warning)
    assert "**1** request has **no price**" in text
    assert "**1** request has **estimated** usage ($0.42)" in text
    assert "**1** request was **refused by a budget**" in text


def test_a_past_month_is_a_month_total_and_shows_a_dash_where_there_is_nothing_to_compare(ledger):
    at = signed_in()
    at.selectbox(key="f_month").set_value(ledger.previous).run()
    metrics = {m.label: m for m in at.metric}
    assert metrics["Month total"].value == "$3.00" and "Month to date" not in metrics
    assert metrics["vs last month"].value == "–" and not metrics["vs last month"].delta
    assert metrics["Forecast to month-end"].value == "–"
    assert "None" not in str([m.value for m in at.metric])


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


def test_departments_are_picked_by_name_in_name_order(ledger):
    at = signed_in()
    picker = at.multiselect(key="f_department")
    assert picker.options == ["Legal", "Product", "Research"]
