"""Chargeback math: exact totals, lines that add up, whatever the rules and the usage."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction

from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from meterline.costing import (
    close_period,
    create_engine,
    create_schema,
    load_chargeback,
    settings_from_dict,
)
from meterline.costing.chargeback import SHARED, compute, split
from meterline.costing.months import charge_period, closed_periods
from tests.seed import event, seed

DEPTS = ["research", "product", "ops"]
CONFIG_DEPTS = [
    {"id": "research", "name": "Research", "cost_center": "CC-100", "teams": [{"id": "nlp"}]},
    {"id": "product", "name": "Product", "cost_center": "CC-200", "teams": [{"id": "web"}]},
    {"id": "ops", "teams": [{"id": "sre"}]},
]

money = st.decimals(min_value=0, max_value=10_000, places=6, allow_nan=False, allow_infinity=False)
percent = st.decimals(min_value=-50, max_value=200, places=2, allow_nan=False, allow_infinity=False)

rows_st = st.lists(
    st.fixed_dictionaries(
        {
            "department": st.sampled_from([*DEPTS, "", "legacy"]),
            "team": st.sampled_from(["nlp", "web", "sre", ""]),
            "project": st.sampled_from(["", "alpha", "=cmd"]),
            "kind": st.sampled_from(["llm", "embedding", "mcp"]),
            "provider": st.just("sim"),
            "model": st.sampled_from(["gpt-4o-mini", "house-model", ""]),
            "tool": st.just(""),
            "adjustment": st.booleans(),
            "tags": st.sampled_from(["", "env=prod"]),
            "requests": st.integers(0, 1000),
            "input_tokens": st.integers(0, 10**6),
            "cached_input_tokens": st.just(0),
            "output_tokens": st.integers(0, 10**6),
            "reasoning_tokens": st.just(0),
            "tool_calls": st.integers(0, 10),
            "cost_pico": st.integers(0, 5 * 10**15),
        }
    ),
    max_size=25,
    unique_by=lambda r: tuple(r[k] for k in ("department", "team", "project", "kind", "model", "adjustment", "tags")),
)

rules_st = st.fixed_dictionaries(
    {
        "allocation": st.sampled_from(["proportional", "even", "weights"]),
        "shared_costs": st.lists(st.builds(lambda n, m: {"name": n, "monthly_usd": str(m)}, st.sampled_from(["platform", "support"]), money), max_size=2, unique_by=lambda s: s["name"]),
        "markup_percent": st.dictionaries(st.sampled_from(DEPTS), percent.map(str)),
        "default_markup_percent": percent.map(str),
        "weights": st.dictionaries(st.sampled_from(DEPTS), st.integers(0, 5).map(str)),
        "currency": st.sampled_from(["USD", "EUR"]),
        "rate": st.decimals(min_value="0.5", max_value="2", places=4),
    }
)


def _settings(rules, period, with_departments=True):
    cb = {k: v for k, v in rules.items() if k != "rate"}
    cb["exchange_rates"] = {period: str(rules["rate"])}
    return settings_from_dict({"departments": CONFIG_DEPTS if with_departments else [], "chargeback": cb}, environ={})


def _expected_total(rows, s, period):
    """The month's total, worked out independently: ledger + shared costs + markup, exactly."""
    cb = s.chargeback
    rate = Fraction(cb.exchange_rates[period]) if cb.currency != "USD" else Fraction(1)
    usage: dict[str, Fraction] = {}
    for r in rows:
        usage[r["department"]] = usage.get(r["department"], Fraction(0)) + Fraction(r["cost_pico"], 10**12) * rate
    ledger = sum(usage.values(), Fraction(0))
    fixed = sum((Fraction(x.monthly_usd) for x in cb.shared_costs), Fraction(0)) * rate
    configured = [d.id for d in s.departments]
    if cb.allocation == "weights":
        w = {d: Fraction(v) for d, v in cb.weights.items() if v > 0}
    else:
        w = {d: u for d, u in usage.items() if d and u > 0} if cb.allocation == "proportional" else {}
        w = w or {d: Fraction(1) for d in (configured or [d for d in usage if d])}
    pool = fixed + usage.get("", Fraction(0)) if w else Fraction(0)
    alloc = {d: pool * x / sum(w.values()) for d, x in w.items()}
    markup = Fraction(0)
    for d in set(usage) | set(alloc):
        if d:
            pct = Fraction(cb.markup_percent.get(d, cb.default_markup_percent))
            markup += (usage.get(d, Fraction(0)) + alloc.get(d, Fraction(0))) * pct / 100
    return ledger, fixed, markup


@hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=rows_st, rules=rules_st, with_departments=st.booleans())
def test_chargeback_total_is_ledger_plus_shared_plus_markup_to_the_cent(rows, rules, with_departments):
    period = "2026-10"
    if not with_departments:
        rules = {**rules, "markup_percent": {}, "weights": {}}
        if rules["allocation"] == "weights":
            rules["allocation"] = "even"
    elif rules["allocation"] == "weights" and not any(int(w) for w in rules["weights"].values()):
        rules = {**rules, "weights": {**rules["weights"], "ops": "1"}}
    s = _settings(rules, period, with_departments)
    cb = compute(rows, s, period)
    ledger, fixed, markup = _expected_total(rows, s, period)

    assert cb.total == Decimal(round((ledger + fixed + markup) * 100)) / 100
    assert sum(d.billed for d in cb.departments) == cb.total
    assert sum(ln.cost_usd for ln in cb.lines) == Decimal(round(ledger * 10**6)).scaleb(-6)
    for d in cb.departments:
        mine = [ln for ln in cb.lines if ln.department == d.department]
        assert sum(ln.charge_usd for ln in mine) == d.charge_usd
        for col in ("cost_usd", "allocated_usd", "markup_usd"):
            assert sum(getattr(ln, col) for ln in mine) == getattr(d, col)
        assert abs(d.charge_usd - d.billed) < Decimal("0.01") + Decimal("0.000003") * (len(mine) + 1)
        if d.department == "" and not cb.warnings:
            assert d.charge_usd == 0  # unattributed usage is billed once, through the pool
    for ln in cb.lines:
        for col in ("cost_usd", "allocated_usd", "markup_usd"):
            assert getattr(ln, col).as_tuple().exponent == -6


def test_shared_costs_follow_the_allocation_rule():
    rows = [
        {**_row("research", 3 * 10**12)},
        {**_row("product", 1 * 10**12)},
        {**_row("", 2 * 10**12)},
    ]
    base = {"shared_costs": [{"name": "platform", "monthly_usd": "100"}]}
    prop = compute(rows, settings_from_dict({"departments": CONFIG_DEPTS, "chargeback": base}, environ={}), "2026-10")
    by = {d.department: d for d in prop.departments}
    assert by["research"].allocated_usd == Decimal("76.500000")  # 3/4 of 102
    assert by["product"].allocated_usd == Decimal("25.500000")
    assert by[""].charge_usd == 0 and by[""].cost_usd == Decimal("2.000000")
    assert prop.total == Decimal("106.00")

    even = compute(rows, settings_from_dict({"departments": CONFIG_DEPTS, "chargeback": {**base, "allocation": "even"}}, environ={}), "2026-10")
    by = {d.department: d for d in even.departments}
    assert by["ops"].allocated_usd == Decimal("34.000000")  # no usage: one shared line
    assert [ln.kind for ln in even.lines if ln.department == "ops"] == [SHARED]
    assert by["research"].billed + by["product"].billed + by["ops"].billed == Decimal("106.00")

    weights = {**base, "allocation": "weights", "weights": {"product": "1"}, "markup_percent": {"product": "10"}}
    w = compute(rows, settings_from_dict({"departments": CONFIG_DEPTS, "chargeback": weights}, environ={}), "2026-10")
    by = {d.department: d for d in w.departments}
    assert by["research"].allocated_usd == 0
    assert by["product"].allocated_usd == Decimal("102.000000")
    assert by["product"].markup_usd == Decimal("10.300000")
    assert w.total == Decimal("116.30")


def test_department_cents_add_up_by_largest_remainder():
    thirds = [_row(d, 10**12 // 3 * 3 + 1) for d in DEPTS]  # 1.000000000001 each... rounding at cents
    s = settings_from_dict({"departments": CONFIG_DEPTS, "chargeback": {"shared_costs": [{"name": "p", "monthly_usd": "0.01"}], "allocation": "even"}}, environ={})
    cb = compute(thirds, s, "2026-10")
    assert cb.total == Decimal("3.01")
    assert sorted(d.billed for d in cb.departments) == [Decimal("1.00"), Decimal("1.00"), Decimal("1.01")]


def test_split_gives_leftover_units_to_the_largest_remainders():
    assert split([Fraction(1, 3)] * 3, 2) == [Decimal("0.34"), Decimal("0.33"), Decimal("0.33")]
    assert split([Fraction(2, 3)] * 3, 2) == [Decimal("0.67"), Decimal("0.67"), Decimal("0.66")]
    assert split([Fraction(1, 300), Fraction(8, 300)], 2) == [Decimal("0.00"), Decimal("0.03")]
    assert split([Fraction(1, 3)] * 3, 2, Decimal("0.98")) == [Decimal("0.33"), Decimal("0.33"), Decimal("0.32")]


def test_currency_converts_at_the_months_rate():
    s = settings_from_dict({"departments": CONFIG_DEPTS, "chargeback": {"currency": "EUR", "exchange_rates": {"2026-10": "0.9"}}}, environ={})
    cb = compute([_row("research", 10 * 10**12)], s, "2026-10")
    assert (cb.currency, cb.total, cb.lines[0].cost_usd) == ("EUR", Decimal("9.00"), Decimal("9.000000"))


def _row(dept, pico):
    return {
        "department": dept, "team": "", "project": "", "kind": "llm", "provider": "sim", "model": "m", "tool": "",
        "adjustment": False, "tags": "", "requests": 1, "input_tokens": 1, "cached_input_tokens": 0,
        "output_tokens": 1, "reasoning_tokens": 0, "tool_calls": 0, "cost_pico": pico,
    }  # fmt: skip


def test_closed_month_snapshot_and_late_events_on_postgresql(postgres_url):
    engine = create_engine(postgres_url)
    create_schema(engine)
    s = settings_from_dict({"departments": CONFIG_DEPTS, "chargeback": {"shared_costs": [{"name": "p", "monthly_usd": "9"}]}}, environ={})
    ts = datetime(2026, 9, 9, tzinfo=UTC)
    seed(engine, [event("1.1", ts), event("2.2", ts, department="product", team="web", tags="env=prod")])
    frozen = close_period(engine, s, "2026-09")
    late = event("0.5", ts)
    late["charge_period"], late["adjustment"] = charge_period(ts, closed_periods(engine))
    seed(engine, [late])
    again = load_chargeback(engine, s, "2026-09")
    assert again.as_dict() == frozen.as_dict() and again.total == Decimal("12.30")
    october = load_chargeback(engine, s, "2026-10")
    assert [(ln.adjustment, ln.cost_usd) for ln in october.lines if ln.kind != SHARED] == [(True, Decimal("0.500000"))]
    engine.dispose()
