"""The Credits page: balances, burn-down and run-out per grant, grants about to expire, and a
rate card's effect on this month's charge, as reports/credits_report.py computes them."""

from __future__ import annotations

from meterline.dashboard.format import money
from meterline.reports.credits_report import credits_view
from tests.dashboard.conftest import NOW, cells, page, signed_in


def test_credits_page_shows_balances_run_out_expiring_grants_and_rate_cards(ledger):
    at = page(signed_in(), "credits")
    assert not at.exception and not at.error
    view = credits_view(ledger.engine, ledger.settings, NOW)
    grants, cards = cells(at, 0), cells(at, 1)
    assert [r["Grant"] for r in grants] == [g.id for g in view.grants] == ["nlp-pilot", "research-q"]
    nlp = next(g for g in view.grants if g.id == "nlp-pilot")
    # nlp drew its own grant first (priority 0): 1.25 + 0.5 + the run's 0.065 of 2.
    assert nlp.drawn_usd == __import__("decimal").Decimal("1.815") and grants[0]["Balance"] == money(nlp.balance_usd) == "$0.19"
    assert grants[1]["Ends"] == view.grants[1].ends.strftime("%Y-%m-%d")
    assert any("research-q" in w.value and "ends on" in w.value for w in at.warning)  # about to expire
    assert [r["Department"] for r in cards] == ["Product"]
    product = view.rate_cards[0]
    assert cards[0]["At the card"] == money(product.rated_usd) and cards[0]["Effect"] == money(product.rated_usd - product.cost_usd)
    assert product.shortfall_usd > 0  # its month is short of its 10 USD commitment
    at.selectbox(key="burn_grant").set_value("research-q").run()
    assert not at.exception
