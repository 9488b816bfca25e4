"""Billing months: one owner for parsing them, their arithmetic, the charge period and closing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from meterline.costing import (
    InvalidMonth,
    PeriodNotEnded,
    charge_period,
    close_period,
    create_engine,
    create_schema,
    has_ended,
    is_closed,
    is_month,
    month_end,
    month_start,
    next_period,
    parse_month,
    period_of,
    previous_period,
    settings_from_dict,
)


@pytest.mark.parametrize("text", ["2026-01", "2026-12", "0001-09"])
def test_a_month_is_four_digits_a_dash_and_01_to_12(text):
    assert is_month(text) and parse_month(text) == text


@pytest.mark.parametrize("text", ["2026-13", "2026-00", "2026-1", "26-01", "2026-01-01", "2026/01", "", " 2026-01", "2026-01\n", "２０２６-01", "0000-05", "9999-12"])
def test_anything_else_is_refused_naming_the_format(text):
    assert not is_month(text)
    with pytest.raises(InvalidMonth, match="expected YYYY-MM") as caught:
        parse_month(text)
    assert isinstance(caught.value, ValueError)  # so config validators report it as their own


def test_a_non_string_is_not_a_month():
    assert not is_month(202601)


def test_next_and_previous_cross_the_year():
    assert next_period("2026-12") == "2027-01" and previous_period("2027-01") == "2026-12"
    assert next_period("2026-05") == "2026-06" and previous_period("2026-06") == "2026-05"


def test_a_month_runs_from_its_first_instant_to_the_next_months():
    assert month_start("2026-02") == datetime(2026, 2, 1, tzinfo=UTC)
    assert month_end("2026-12") == datetime(2027, 1, 1, tzinfo=UTC)
    assert period_of(datetime(2026, 2, 28, 23, 59, 59, tzinfo=UTC)) == "2026-02"


def test_a_month_has_ended_once_the_next_one_begins():
    assert not has_ended("2026-11", datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC))
    assert has_ended("2026-11", datetime(2026, 12, 1, tzinfo=UTC))
    assert not has_ended("2026-12", datetime(2026, 11, 15, tzinfo=UTC))


def test_a_call_of_a_closed_month_is_billed_late_in_the_first_open_one():
    ts = datetime(2026, 7, 9, tzinfo=UTC)
    assert charge_period(ts, set()) == ("2026-07", False)
    assert charge_period(ts, {"2026-07", "2026-08"}) == ("2026-09", True)
    assert charge_period(ts, {"2026-06"}) == ("2026-07", False)


def test_a_month_is_closed_only_once_it_is_over_unless_forced(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    create_schema(engine)
    settings = settings_from_dict({}, environ={})
    during = datetime(2026, 11, 20, tzinfo=UTC)
    with pytest.raises(PeriodNotEnded, match="2026-11 has not ended yet \\(now 2026-11\\)"):
        close_period(engine, settings, "2026-11", now=during)
    assert not is_closed(engine, "2026-11")

    close_period(engine, settings, "2026-10", now=during)
    close_period(engine, settings, "2026-11", now=during, force=True)
    assert is_closed(engine, "2026-10") and is_closed(engine, "2026-11")
    engine.dispose()
