"""FOCUS rows per billed dimension: a chargeback line whose calls were billed along more than
text at the default tier is split into one row per SKU it used, each with its own SkuId and
PricingUnit, so finance sees what cached input, cache writes (5-minute and 1-hour), audio and
image tokens, reasoning, server-side tools, a service tier or a long-context tier cost.

A SKU is the line's model and one dimension, with the service tier and long-context threshold
that priced it: `openai/llm/gpt-5/input/priority`, `google/llm/gemini-2.5-pro/output/above-200k`,
`anthropic/llm/claude-haiku-4-5/cache_write_1h`. The line's own SkuId (`provider/kind/model`)
stays on the row of its text at the default tier, which is every call that was billed as
text only. The parts come from the ledger's `cost_detail` of the month's calls (the few that
carry one, read through a partial index).

Money: each row takes the share of the line's money columns (BilledCost, ListCost, usage,
allocated, markup) that its part is of the line's cost, rounded to six places, and the row of
the largest part takes what rounding left, so the rows of a line add up to the line exactly
and BilledCost still adds up to the chargeback CSV's charge_usd. The x_ counts (requests,
tokens) stay on the line's first row, so they too add up as in the CSV.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from meterline.costing import ChargebackLine, from_pico, parse_detail
from meterline.costing.tables import DETAILED

from .chargeback import Q6
from .ledger_queries import EVENTS

LineKey = tuple[str, str, str, str, str, str, str, bool, str]  # chargeback.LINE_DIMS, in order
Q1 = Decimal("0.0")

# Each dimension of cost_detail: how its quantity is read from an event's counts, its unit.
# `input` and `output` are what is left of the totals once the other parts are taken out.
_TOOLS = {"web_search": "Web Search Calls", "file_search": "File Search Calls", "code_interpreter": "Code Interpreter Calls"}
PRICING_UNITS = {
    "input": "Input Tokens",
    "cached_input": "Cached Input Tokens",
    "cache_write": "Cache Write Tokens",  # 5-minute TTL; FOCUS UnitFormat allows words only
    "cache_write_1h": "Hourly Cache Write Tokens",  # 1-hour TTL
    "input_audio": "Audio Input Tokens",
    "input_image": "Image Input Tokens",
    "output": "Output Tokens",
    "reasoning": "Reasoning Tokens",
    "output_audio": "Audio Output Tokens",
    "output_image": "Image Output Tokens",
    **_TOOLS,
}
MONEY = ("BilledCost", "EffectiveCost", "ListCost", "ContractedCost", "x_UsageCost", "x_AllocatedCost", "x_Markup")
COUNTS = ("x_Requests", "x_InputTokens", "x_CachedInputTokens", "x_OutputTokens", "x_ReasoningTokens", "x_ToolCalls")


@dataclass
class Part:
    """One SKU of a line: a dimension at a tier and context threshold, its cost and quantity."""

    dimension: str
    tier: str
    above: int
    pico: int = 0
    quantity: int = 0

    def sku(self, base: str) -> str:
        tier = f"/{self.tier}" if self.tier and self.tier != "default" else ""
        above = f"/above-{self.above // 1000}k" if self.above else ""
        return f"{base}/{self.dimension}{tier}{above}"


@dataclass
class LineParts:
    parts: dict[tuple[str, str, int], Part]
    tokens: int = 0  # input + output tokens of the line's calls that carry a breakdown


def line_parts(engine: sa.Engine, period: str) -> dict[LineKey, LineParts]:
    """The month's detailed calls summed per chargeback line and SKU."""
    t = EVENTS
    cols = [t.c[c] for c in ("department", "team", "project", "kind", "provider", "model", "tool", "adjustment", "tags")]
    q = sa.select(
        *cols, t.c.cost_detail, t.c.service_tier, t.c.long_context_above, t.c.input_tokens, t.c.cached_input_tokens,
        t.c.output_tokens, t.c.reasoning_tokens, t.c.cache_write_tokens, t.c.cache_write_1h_tokens,
        t.c.input_audio_tokens, t.c.output_audio_tokens, t.c.input_image_tokens, t.c.output_image_tokens,
        t.c.web_search_calls, t.c.file_search_calls, t.c.code_interpreter_calls,
    ).where(t.c.charge_period == period, sa.text(DETAILED), t.c.cost_detail != "")  # fmt: skip
    out: dict[LineKey, LineParts] = {}
    with engine.connect() as conn:
        for r in conn.execute(q).mappings():
            key: LineKey = (r["department"], r["team"], r["project"], r["kind"], r["provider"], r["model"], r["tool"],
                            bool(r["adjustment"]), r["tags"])  # fmt: skip
            lp = out.setdefault(key, LineParts({}))
            lp.tokens += r["input_tokens"] + r["output_tokens"]
            counts = quantities(r)
            for dim, pico in parse_detail(r["cost_detail"]).items():
                k = (dim, r["service_tier"] or "default", r["long_context_above"] or 0)
                part = lp.parts.setdefault(k, Part(*k))
                part.pico += pico
                part.quantity += counts.get(dim, 0)
    return out


def quantities(r: Any) -> dict[str, int]:
    """An event's count per dimension, bounded as money.breakdown bounds them."""
    inp, out = r["input_tokens"], r["output_tokens"]
    cached = min(r["cached_input_tokens"], inp)
    write = min(r["cache_write_tokens"], inp - cached)
    write_1h = min(r["cache_write_1h_tokens"], write)
    audio_in = min(r["input_audio_tokens"], inp - cached - write)
    image_in = min(r["input_image_tokens"], inp - cached - write - audio_in)
    audio_out = min(r["output_audio_tokens"], out)
    image_out = min(r["output_image_tokens"], out - audio_out)
    reasoning = min(r["reasoning_tokens"], out - audio_out - image_out)
    return {
        "input": inp - cached - write - audio_in - image_in,
        "cached_input": cached,
        "cache_write": write - write_1h,
        "cache_write_1h": write_1h,
        "input_audio": audio_in,
        "input_image": image_in,
        # Reasoning is its own part only where it has its own rate; else it is in output.
        "output": out - audio_out - image_out - (reasoning if "reasoning" in (r["cost_detail"] or "") else 0),
        "reasoning": reasoning,
        "output_audio": audio_out,
        "output_image": image_out,
        **{tool: r[f"{tool}_calls"] for tool in _TOOLS},
    }


def split(rec: dict[str, Any], ln: ChargebackLine, lp: LineParts | None) -> Iterator[dict[str, Any]]:
    """The line's FOCUS record as one row per SKU (itself alone when it has no parts)."""
    if lp is None or not lp.parts or ln.kind == "shared" or not rec.get("SkuId"):
        yield rec
        return
    parts = sorted(lp.parts.values(), key=lambda p: (-p.pico, p.sku("")))
    detailed = sum(p.pico for p in parts)
    text = max(ln.cost_usd - from_pico(detailed), Decimal(0))  # what the line's text-only calls cost
    weights = [text, *(from_pico(max(p.pico, 0)) for p in parts)]
    total = sum(weights, Decimal(0))
    if total <= 0:
        yield rec
        return
    split_money = {col: shares(rec[col], weights) for col in MONEY if isinstance(rec.get(col), Decimal)}
    base_tokens = Decimal(max(ln.input_tokens + ln.output_tokens - lp.tokens, 0)).quantize(Q1)
    for i, part in enumerate([None, *parts]):
        row = dict(rec)  # the first: the line's text at the default tier, and its x_ counts
        for col, values in split_money.items():
            row[col] = values[i]
        if part is not None:
            row |= _part_columns(rec, part)
        else:
            row["ConsumedQuantity"] = row["PricingQuantity"] = base_tokens
        yield row


def _part_columns(rec: dict[str, Any], part: Part) -> dict[str, Any]:
    qty = Decimal(part.quantity).quantize(Q1)
    tool = part.dimension in _TOOLS
    what = PRICING_UNITS.get(part.dimension, part.dimension)
    tier = f", {part.tier} tier" if part.tier and part.tier != "default" else ""
    above = f", prompt above {part.above // 1000}k tokens" if part.above else ""
    return {
        "SkuId": part.sku(rec["SkuId"]),
        "ConsumedQuantity": qty,
        "ConsumedUnit": "Requests" if tool else "Tokens",
        "PricingQuantity": qty,
        "PricingUnit": what,
        "ChargeDescription": f"{rec['ChargeDescription']}: {what.lower()}{tier}{above}",
        **dict.fromkeys(COUNTS, 0),
    }


def shares(amount: Decimal, weights: list[Decimal]) -> list[Decimal]:
    """`amount` split in proportion to `weights`, six places each, adding up to it exactly (the
    largest weight takes what rounding left; equal parts when every weight is 0)."""
    total = sum(weights, Decimal(0))
    if total <= 0:
        weights, total = [Decimal(1)] * len(weights), Decimal(len(weights))
    out = [(amount * w / total).quantize(Q6) for w in weights]
    largest = max(range(len(weights)), key=lambda i: weights[i])
    out[largest] += amount - sum(out, Decimal(0))
    return out


def line_key(ln: ChargebackLine) -> LineKey:
    return (ln.department, ln.team, ln.project, ln.kind, ln.provider, ln.model, ln.tool, ln.adjustment, ln.tags)


__all__ = ["PRICING_UNITS", "LineParts", "Part", "line_key", "line_parts", "shares", "split"]
