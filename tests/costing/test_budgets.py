"""Budget bookkeeping without a proxy: what counts as spent, when, and only once."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from meterline.costing import (
    BudgetExceeded,
    PriceBook,
    create_engine,
    create_schema,
    settings_from_dict,
)
from meterline.costing.budgets import Budgets
from meterline.costing.ingest import LedgerWriter
from meterline.costing.spool import Spool
from tests.seed import event, seed

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)


@dataclass
class FakeCall:
    call_id: str
    kind: str = "llm"
    provider: str = "sim"
    model: str = "gpt-4o-mini"
    tool: str = ""
    request_bytes: int = 400
    max_output_tokens: int = 0
    ts: datetime = NOW
    reserved: Decimal = Decimal(0)
    payer: SimpleNamespace = field(default_factory=lambda: SimpleNamespace(department="research", team="nlp"))
    key: SimpleNamespace = field(default_factory=lambda: SimpleNamespace(id="key_1"))


@pytest.fixture(params=["sqlite", "postgresql"])
def setup(request, tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    engine = create_engine(url)
    create_schema(engine)
    settings = settings_from_dict(
        {
            "departments": [{"id": "research", "teams": [{"id": "nlp", "budget_usd_monthly": "1"}]}],
            "prices": [{"model": "gpt-4o-mini", "input_per_mtok": "0.15", "output_per_mtok": "0.60"}],
            "budgets": {"soft_threshold_percent": 50},
        },
        environ={},
    )
    clock = {"now": NOW}
    budgets = Budgets(engine, settings, PriceBook(settings.prices, bundled={}), now=lambda: clock["now"])
    yield engine, budgets, clock
    engine.dispose()


def _recorded(call_id, cost, ts=NOW):
    return event(cost, ts, call_id=call_id)


def test_spend_is_the_ledger_plus_recorded_calls_plus_reservations_each_counted_once(setup):
    engine, budgets, _ = setup
    seed(engine, [event("0.25", NOW, call_id="old1")])
    budgets.refresh()
    assert budgets.spent(("team", "nlp")) == Decimal("0.25")

    call = FakeCall("c1")
    reserved = budgets.admit(call)
    # 400 bytes / 4 = 100 input tokens, and 1000 output tokens before any call was seen.
    assert reserved == 100 * Decimal("0.15") / 10**6 + 1000 * Decimal("0.60") / 10**6
    assert budgets.spent(("team", "nlp")) == Decimal("0.25") + reserved

    row = _recorded("c1", "0.1")
    budgets.settle(row, call)
    assert budgets.spent(("team", "nlp")) == Decimal("0.35")
    budgets.refresh()  # not in the ledger yet: still counted from memory
    assert budgets.spent(("team", "nlp")) == Decimal("0.35")
    seed(engine, [row])
    budgets.refresh()  # now from the ledger, and not twice
    assert budgets.spent(("team", "nlp")) == Decimal("0.35")


def test_following_the_ledger_writer_each_call_counts_once_and_one_the_ledger_refused_still_counts(setup, tmp_path):
    engine, budgets, _ = setup
    spool = Spool(tmp_path / "spool")
    writer = LedgerWriter(engine, spool)
    budgets.follow(writer)
    for i in range(3):
        row = _recorded(f"w{i}", "0.1")
        budgets.settle(row, None)
        spooled = {k: v for k, v in row.items() if k not in ("charge_period", "adjustment")}
        if i == 1:
            del spooled["kind"]  # the ledger refuses this one: kept aside, never in the ledger
        spool.append(spooled)
    budgets.refresh()
    assert budgets.spent(("team", "nlp")) == Decimal("0.3")

    assert writer.flush() == 2
    budgets.refresh()  # two from the ledger, the refused one still from memory
    assert budgets.spent(("team", "nlp")) == Decimal("0.3")
    budgets.refresh()
    assert budgets.spent(("team", "nlp")) == Decimal("0.3")
    spool.close()


def test_a_read_taken_between_the_writers_commit_and_its_word_counts_each_call_once(setup, tmp_path):
    engine, budgets, _ = setup
    spool = Spool(tmp_path / "spool")
    writer = LedgerWriter(engine, spool)
    committed, go_on = threading.Event(), threading.Event()

    def descheduled(_ids):  # told first: holds the writer between its commit and its word to budgets
        committed.set()
        go_on.wait(10)

    writer.on_written.append(descheduled)
    budgets.follow(writer)
    for i in range(5):
        row = _recorded(f"d{i}", "0.1")
        budgets.settle(row, None)
        spool.append({k: v for k, v in row.items() if k not in ("charge_period", "adjustment")})
    flushing = threading.Thread(target=writer.flush)
    flushing.start()
    try:
        assert committed.wait(10)
        budgets.refresh()  # the ledger has all five; the writer has not said so yet
        assert budgets.spent(("team", "nlp")) == Decimal("0.5")
        budgets.admit(FakeCall("next", request_bytes=0, max_output_tokens=1))  # half the budget is left
    finally:
        go_on.set()
        flushing.join(10)
        spool.close()
    budgets.refresh()
    assert budgets.spent(("team", "nlp")) == Decimal("0.5") + Decimal("0.60") / 10**6


def test_estimates_learn_the_models_output_size(setup):
    _, budgets, _ = setup
    for i in range(3):
        budgets.settle(_recorded(f"s{i}", "0.000001") | {"output_tokens": 20 + i}, None)
    assert budgets.estimate(FakeCall("e", request_bytes=40)) == 10 * Decimal("0.15") / 10**6 + 22 * Decimal("0.60") / 10**6


def test_an_estimate_reserves_no_more_output_than_the_request_allows():
    # Before any call of the model is seen: 1,000 output tokens, or the request's max_tokens if lower.
    settings = settings_from_dict({"prices": [{"model": "gpt-4o-mini", "input_per_mtok": "0.15", "output_per_mtok": "0.60"}]}, environ={})
    budgets = Budgets(create_engine("sqlite://"), settings, PriceBook(settings.prices, bundled={}), now=lambda: NOW)
    inp = 10 * Decimal("0.15") / 10**6
    assert budgets.estimate(FakeCall("a", request_bytes=40, max_output_tokens=50)) == inp + 50 * Decimal("0.60") / 10**6
    assert budgets.estimate(FakeCall("b", request_bytes=40, max_output_tokens=5000)) == inp + 1000 * Decimal("0.60") / 10**6
    assert budgets.estimate(FakeCall("c", request_bytes=40)) == inp + 1000 * Decimal("0.60") / 10**6


def test_a_refusal_is_noted_once_and_a_new_month_starts_from_zero(setup):
    engine, budgets, clock = setup
    seed(engine, [event("1.5", NOW)])
    budgets.refresh()
    for i in range(2):
        call = FakeCall(f"r{i}")
        with pytest.raises(BudgetExceeded):  # the caller records the refusal; budgets only answer
            budgets.admit(call)
    budgets.stop()  # sends what is queued
    with engine.connect() as conn:
        notes = sorted(conn.execute(sa.text("SELECT kind, subject, period FROM notes")).all())
    assert notes == [("budget_hard", "team:nlp", "2026-11"), ("budget_soft", "team:nlp", "2026-11")]

    clock["now"] = datetime(2026, 12, 1, 0, 0, 1, tzinfo=UTC)
    budgets.refresh()
    call = FakeCall("dec", ts=clock["now"])
    assert budgets.admit(call) > 0
