"""The month and filters are kept across pages and in the URL; a link survives signing in;
the dashboard opens on a month with enough data."""

from __future__ import annotations

import sys

from streamlit.testing.v1 import AppTest

from meterline.dashboard import APP_PATH
from tests.dashboard.conftest import ADMIN_PASSWORD, NOW, page, signed_in


def test_the_month_and_filters_are_kept_across_pages_and_written_to_the_url(ledger):
    at = signed_in()
    at.selectbox(key="f_month").set_value(ledger.previous).run()
    at.multiselect(key="f_department").set_value(["research"]).run()
    assert at.query_params["month"] == ledger.previous and at.query_params["department"] == "research"
    for name, title in (("budgets", "Budgets"), ("chargeback", "Chargeback"), ("departments", "Departments")):
        page(at, name)
        assert at.selectbox(key="f_month").value == ledger.previous, name
        assert at.multiselect(key="f_department").value == ["research"], name
        assert at.title[0].value == f"{title} · {ledger.previous}"
        assert at.query_params["month"] == ledger.previous


def test_a_linked_view_opens_with_its_month_and_filters(ledger):
    at = AppTest.from_file(str(APP_PATH), default_timeout=60)
    at.query_params["month"] = ledger.previous
    at.query_params["team"] = "web"
    at.run()
    at.text_input(key="login_password").set_value(ADMIN_PASSWORD)
    at.button[0].click().run()
    assert not at.exception
    assert at.selectbox(key="f_month").value == ledger.previous
    assert at.multiselect(key="f_team").value == ["web"]
    assert at.metric[0].value == "$1.00"  # web's spend of last month


def test_a_month_in_the_url_that_has_no_data_falls_back_to_the_default(ledger):
    at = AppTest.from_file(str(APP_PATH), default_timeout=60)
    at.query_params["month"] = "1999-01"
    at.run()
    at.text_input(key="login_password").set_value(ADMIN_PASSWORD)
    at.button[0].click().run()
    assert not at.exception and at.selectbox(key="f_month").value == ledger.period


def test_on_the_first_of_a_month_the_dashboard_opens_on_the_month_before_and_says_so(ledger, monkeypatch):
    first = NOW.replace(day=1, hour=9)
    monkeypatch.setattr(sys, "argv", [sys.argv[0], "--now", first.isoformat()])
    at = signed_in()
    assert at.selectbox(key="f_month").value == ledger.previous
    note = " ".join(c.value for c in at.sidebar.caption)
    assert f"Showing {ledger.previous}, the latest month with a full day of data: {ledger.period} began 9 hours ago" in note
    assert at.selectbox(key="f_month").options[0] == ledger.period  # still there to pick
