"""FOCUS rows per billed dimension: a line billed along more than text is one row per SKU, each
with its own SkuId and PricingUnit, and the rows still add up to the chargeback exactly.

The month is seeded as the proxy records calls: each detailed call carries its cost by
dimension (`cost_detail`, pico-USD), computed here by hand from the rates of the bundled map.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import yaml

from meterline.costing import PICO, create_engine, create_schema
from meterline.costing.tables import DIMENSION_FIELDS
from tests.conftest import base_config, run_cli
from tests.reports import focus_validator
from tests.seed import event as seed_event
from tests.seed import seed

M = Decimal(1_000_000)
BILLING = {**dict.fromkeys(DIMENSION_FIELDS, 0), "service_tier": "default", "long_context_above": 0, "usage_flag": "",
           "cost_detail": "", "cache_write_tokens": 0, "price_version": ""}  # fmt: skip


def event(cost: Decimal, **fields) -> dict:
    return seed_event(cost, **{**BILLING, **fields})


def detailed(parts: dict[str, Decimal], **fields) -> dict:
    """An event whose cost is the sum of its parts, exactly as Meter.record stores it."""
    picos = {k: int(v / PICO) for k, v in parts.items()}
    cost = sum(picos.values()) * PICO
    return event(cost, cost_detail=";".join(f"{k}={v}" for k, v in picos.items()), **fields)


@pytest.fixture(scope="module")
def month(tmp_path_factory):
    return build_month(tmp_path_factory.mktemp("dims"))


def build_month(folder):
    """The month's config and ledger in `folder`: (config path, period, folder)."""
    cfg = base_config(folder, "http://127.0.0.1:9", chargeback={"markup_percent": {"research": "7.5"}})
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    engine = create_engine(cfg["database"])
    create_schema(engine)
    ts = datetime.now(UTC).replace(day=2, hour=10)
    gpt5 = dict(team="nlp", provider="openai", model="gpt-5", ts=ts)
    rows = [
        # gpt-5 at priority: $2.50 input, $0.25 cached, $20 output per 1M.
        detailed({"input": 1000 * Decimal("2.50") / M, "cached_input": 500 * Decimal("0.25") / M,
                  "output": 200 * Decimal("20") / M},
                 input_tokens=1500, cached_input_tokens=500, output_tokens=200, service_tier="priority", **gpt5),
        # the same line's plain text at the default tier ($1.25 / $10): the line's own SKU.
        event((1000 * Decimal("1.25") + 100 * Decimal(10)) / M, input_tokens=1000, output_tokens=100, **gpt5),
        # a Responses call with two web searches ($10 per 1,000).
        detailed({"input": 800 * Decimal("1.25") / M, "output": 50 * Decimal(10) / M, "web_search": 2 * Decimal(10) / 1000},
                 input_tokens=800, output_tokens=50, web_search_calls=2, **gpt5),
        # Claude Haiku 4.5: 5-minute writes $1.25, 1-hour writes $2.00 per 1M.
        detailed({"input": 100 * Decimal(1) / M, "cache_write": 300 * Decimal("1.25") / M,
                  "cache_write_1h": 200 * Decimal(2) / M, "output": 40 * Decimal(5) / M},
                 team="vision", provider="anthropic", model="claude-haiku-4-5", ts=ts, input_tokens=600,
                 cache_write_tokens=500, cache_write_1h_tokens=200, output_tokens=40),
        # Gemini 2.5 Pro above 200k prompt tokens: $2.50 input, $15 output.
        detailed({"input": 250_000 * Decimal("2.50") / M, "output": 1000 * Decimal(15) / M},
                 team="vision", provider="google", model="gemini-2.5-pro", ts=ts, input_tokens=250_000,
                 output_tokens=1000, long_context_above=200_000),
        # an audio call: audio in $40, out $80 per 1M; text $2.50 / $10.
        detailed({"input": 100 * Decimal("2.50") / M, "input_audio": 400 * Decimal(40) / M,
                  "output": 20 * Decimal(10) / M, "output_audio": 300 * Decimal(80) / M},
                 department="product", team="web", cost_center="CC-200", provider="openai", model="gpt-4o-audio-preview",
                 ts=ts, input_tokens=500, input_audio_tokens=400, output_tokens=320, output_audio_tokens=300),
    ]  # fmt: skip
    seed(engine, rows)
    engine.dispose()
    return path, ts.strftime("%Y-%m"), folder


def _export(month, fmt: str = "focus") -> str:
    path, period, _ = month
    return run_cli("export", "chargeback", "--month", period, "--format", fmt, "--config", str(path)).stdout


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_each_dimension_is_a_row_with_its_own_sku_and_pricing_unit(month):
    rows = {r["SkuId"]: r for r in _rows(_export(month)) if r["ChargeCategory"] == "Usage"}
    expected = {
        "openai/llm/gpt-5": ("Tokens", "Tokens", "1100.0"),  # text-only calls: the line's own SKU
        "openai/llm/gpt-5/input/priority": ("Tokens", "Input Tokens", "1000.0"),
        "openai/llm/gpt-5/cached_input/priority": ("Tokens", "Cached Input Tokens", "500.0"),
        "openai/llm/gpt-5/output/priority": ("Tokens", "Output Tokens", "200.0"),
        "openai/llm/gpt-5/web_search": ("Requests", "Web Search Calls", "2.0"),
        "anthropic/llm/claude-haiku-4-5/cache_write": ("Tokens", "Cache Write Tokens", "300.0"),
        "anthropic/llm/claude-haiku-4-5/cache_write_1h": ("Tokens", "Hourly Cache Write Tokens", "200.0"),
        "google/llm/gemini-2.5-pro/input/above-200k": ("Tokens", "Input Tokens", "250000.0"),
        "google/llm/gemini-2.5-pro/output/above-200k": ("Tokens", "Output Tokens", "1000.0"),
        "openai/llm/gpt-4o-audio-preview/input_audio": ("Tokens", "Audio Input Tokens", "400.0"),
        "openai/llm/gpt-4o-audio-preview/output_audio": ("Tokens", "Audio Output Tokens", "300.0"),
    }
    for sku, (consumed_unit, pricing_unit, qty) in expected.items():
        r = rows[sku]
        assert (r["ConsumedUnit"], r["PricingUnit"], r["PricingQuantity"], r["ConsumedQuantity"]) == (
            consumed_unit, pricing_unit, qty, qty), sku  # fmt: skip
    # gpt-5's line at the default tier holds the plain input and output of the web-search call
    assert rows["openai/llm/gpt-5/input"]["PricingQuantity"] == "800.0"
    # each part's usage cost is its cost by hand: 1-hour writes 200 x $2.00 / 1M
    assert Decimal(rows["anthropic/llm/claude-haiku-4-5/cache_write_1h"]["x_UsageCost"]) == Decimal("0.000400")
    assert Decimal(rows["openai/llm/gpt-5/web_search"]["x_UsageCost"]) == Decimal("0.020000")


def test_the_rows_of_each_line_add_up_to_its_charge_exactly(month):
    focus = _rows(_export(month))
    chargeback = _rows(_export(month, "csv"))
    usage = [r for r in focus if r["ChargeCategory"] == "Usage"]
    assert len(usage) > len(chargeback)  # lines were split
    total = sum(Decimal(r["BilledCost"]) for r in usage)
    assert total == sum(Decimal(r["charge_usd"]) for r in chargeback)
    for line in chargeback:
        mine = [r for r in usage if (r["x_Team"], r["ResourceName"]) == (line["team"], line["model"])]
        assert sum(Decimal(r["BilledCost"]) for r in mine) == Decimal(line["charge_usd"])
        assert sum(Decimal(r["x_UsageCost"]) for r in mine) == Decimal(line["cost_usd"])
        assert sum(Decimal(r["x_Markup"]) for r in mine) == Decimal(line["markup_usd"])
        assert sum(int(r["x_Requests"]) for r in mine) == int(line["requests"])
        assert sum(int(r["x_InputTokens"]) for r in mine) == int(line["input_tokens"])


@pytest.fixture(scope="module")
def validator_env():
    return focus_validator.ensure_venv()


@pytest.mark.parametrize("fmt,suffix", [("focus", "csv"), ("focus-parquet", "parquet")])
def test_the_split_rows_pass_every_must_rule_of_the_validator(validator_env, month, fmt, suffix):
    path, period, folder = month
    out = folder / f"dims.{suffix}"
    run_cli("export", "chargeback", "--month", period, "--format", fmt, "--out", str(out), "--config", str(path))
    report = focus_validator.validate(out, folder)
    assert report.total > 500 and report.passed > 100
    assert report.must_failures == [], f"MUST rules failed: {report.must_failures}"


def test_the_statement_breaks_usage_down_by_billed_dimension(month):
    path, period, _ = month
    from meterline.costing import load_settings
    from meterline.reports.statement import render_html, statement

    settings = load_settings(path)
    engine = create_engine(settings.database)
    try:
        st = statement(engine, settings, period, "research")
        product = statement(engine, settings, period, "product")
    finally:
        engine.dispose()
    names = dict(st.dimensions)
    assert {"Text, standard rates", "Input tokens", "Cached input tokens", "Output tokens", "Web searches",
            "Cache writes (5 minutes)", "Cache writes (1 hour)"} <= set(names)  # fmt: skip
    assert names["Web searches"] == Decimal("0.02")
    exact = sum((i.exact for i in st.items + st.adjustments), Decimal(0))
    assert sum(names.values(), Decimal(0)) == exact.quantize(Decimal("0.01"))  # the same usage, split
    notes = dict(st.dimension_notes)
    assert "at the priority service tier" in notes
    assert "with a prompt past a long-context threshold (whole calls)" in notes
    assert notes["with a prompt past a long-context threshold (whole calls)"] == Decimal("0.64")  # 0.625 + 0.015
    html = render_html(st)
    assert "Usage by billed dimension" in html and "Cache writes (1 hour)" in html
    assert "Audio output tokens" in dict(product.dimensions)
