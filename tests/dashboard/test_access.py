"""Access: a login in front of everything, and a department-limited viewer sees nothing else."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from meterline.costing import Org
from meterline.dashboard import APP_PATH
from meterline.dashboard.format import money
from meterline.reports.filters import Filters
from meterline.reports.overview import overview
from tests.dashboard.conftest import VIEWER_PASSWORD, page, rendered, signed_in

PAGES = ["overview", "departments", "agents", "budgets", "chargeback"]
# Names and amounts of research and finance, which the product viewer must never get.
OTHERS = [b"research", b"Research", b"nlp", b"vision", b"legal", b"Legal", b"contracts", b"CC-100", b"CC-300",
          b"ana.nlp", b"ben.nlp", b"cy.vision", b"fay.books", b"1.250000", b"0.777777", b"summarize"]  # fmt: skip


def test_without_signing_in_no_page_shows_data(ledger):
    at = AppTest.from_file(str(APP_PATH), default_timeout=60).run()
    assert not at.metric and not at.dataframe
    assert [t.value for t in at.text_input] == ["admin", ""]


def test_a_wrong_password_is_refused(ledger):
    at = signed_in("admin", "not-the-password")
    assert [e.value for e in at.error] == ["Wrong user or password."]
    assert not at.metric and not at.dataframe


def test_with_no_password_configured_the_dashboard_explains_and_shows_nothing(ledger, monkeypatch):
    monkeypatch.delenv("METERLINE_DASHBOARD_PASSWORD")
    monkeypatch.delenv("METERLINE_VIEWER_PRODUCT")
    at = AppTest.from_file(str(APP_PATH), default_timeout=60).run()
    assert "METERLINE_DASHBOARD_PASSWORD" in at.error[0].value
    assert not at.text_input and not at.metric and not at.dataframe


@pytest.mark.parametrize("name", PAGES)
def test_a_department_viewer_sees_nothing_of_other_departments(ledger, name):
    at = page(signed_in("product-lead", VIEWER_PASSWORD), name)
    shown = rendered(at)
    assert b"product" in shown or b"Product" in shown or name == "agents"
    leaked = [x for x in OTHERS if x in shown]
    assert not leaked, f"{name} shows {leaked}"


def test_a_department_viewer_cannot_pick_another_department(ledger):
    at = signed_in("product-lead", VIEWER_PASSWORD)
    assert not [m for m in at.multiselect if m.key == "f_department"]
    assert at.multiselect(key="f_team").options == ["web"]
    assert any("Department: **Product**" in c.value for c in at.sidebar.caption)
    mine = overview(ledger.engine, Org(ledger.settings), ledger.period, Filters(departments=("product",)))
    assert at.metric[0].value == money(mine.total_usd) == "$3.52"
    # Even a query for research inside the reports returns nothing for this viewer.
    assert Filters(departments=("research",)).within("product").departments != ("research",)


def test_an_oidc_identity_is_matched_to_its_viewer_entry(ledger):
    at = AppTest.from_file(str(APP_PATH), default_timeout=60)
    at.secrets["auth"] = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "x"}
    at.user = {"is_logged_in": False}
    at.run()
    assert [b.label for b in at.button] == ["Sign in"] and not at.metric
    at.user = {"is_logged_in": True, "email": "stranger@example.com"}
    at.run()
    assert "may not open this dashboard" in at.error[0].value and not at.metric
