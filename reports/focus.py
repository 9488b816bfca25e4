"""The chargeback as FinOps FOCUS rows (FOCUS 1.1 column names; our own columns start with x_).

One row per chargeback line, so BilledCost adds up to the chargeback CSV's charge_usd exactly.
Meterline is the invoice issuer (finance's internal AI platform); the provider is the upstream
the calls went to. Choices:
- BilledCost = EffectiveCost = ContractedCost = the line's charge (usage + allocated shared
  costs + markup); ListCost = usage + allocated at list prices, before markup or discount.
- ChargeCategory `Usage` for metered calls; `Purchase` (recurring) for a line that only
  carries a department's share of the fixed shared costs. Usage of a closed month billed in
  a later one has ChargeClass `Correction`.
- ConsumedQuantity counts tokens (input + output) for LLM and embedding calls and calls for
  MCP tools; PricingQuantity/Unit are the same.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

from meterline.costing import Chargeback, ChargebackLine

from .chargeback import Q6

FOCUS_COLUMNS = [
    "BilledCost",
    "EffectiveCost",
    "ListCost",
    "ContractedCost",
    "BillingCurrency",
    "BillingAccountId",
    "BillingAccountName",
    "BillingPeriodStart",
    "BillingPeriodEnd",
    "ChargePeriodStart",
    "ChargePeriodEnd",
    "ChargeCategory",
    "ChargeClass",
    "ChargeFrequency",
    "ChargeDescription",
    "ServiceName",
    "ServiceCategory",
    "ProviderName",
    "PublisherName",
    "InvoiceIssuerName",
    "ResourceId",
    "ResourceName",
    "ResourceType",
    "SkuId",
    "ConsumedQuantity",
    "ConsumedUnit",
    "PricingCategory",
    "PricingQuantity",
    "PricingUnit",
    "SubAccountId",
    "SubAccountName",
    "Tags",
    "x_Department",
    "x_DepartmentName",
    "x_Team",
    "x_CostCenter",
    "x_Project",
    "x_Kind",
    "x_Requests",
    "x_InputTokens",
    "x_CachedInputTokens",
    "x_OutputTokens",
    "x_ReasoningTokens",
    "x_ToolCalls",
    "x_UsageCost",
    "x_AllocatedCost",
    "x_Markup",
    "x_Adjustment",
]

SERVICES = {"llm": "LLM inference", "embedding": "Embeddings", "mcp": "MCP tools", "shared": "Shared AI platform"}
ISSUER = "Meterline"


def _month_bounds(period: str) -> tuple[str, str]:
    y, m = int(period[:4]), int(period[5:])
    ny, nm = (y + 1, 1) if m == 12 else (y, m + 1)
    return f"{y:04d}-{m:02d}-01T00:00:00Z", f"{ny:04d}-{nm:02d}-01T00:00:00Z"


def tags_json(tags: str) -> str:
    """`k=v,k2=v2` as a FOCUS Tags JSON object (a key without a value maps to "")."""
    out: dict[str, str] = {}
    for part in filter(None, tags.split(",")):
        k, _, v = part.partition("=")
        out[k.strip()] = v.strip()
    return orjson.dumps(out).decode()


def _description(ln: ChargebackLine) -> str:
    if ln.kind == "shared":
        return f"Share of shared costs ({ln.tool})" if ln.tool else "Share of shared costs"
    what = f"{ln.kind} calls to {ln.tool or ln.model or 'unknown'}"
    who = f" by team {ln.team}" if ln.team else ""
    late = " (late usage of a closed month)" if ln.adjustment else ""
    return f"{what}{who}{late}"


def focus_record(cb: Chargeback, ln: ChargebackLine, names: dict[str, str]) -> dict[str, Any]:
    start, end = _month_bounds(cb.period)
    shared = ln.kind == "shared"
    tokens = ln.input_tokens + ln.output_tokens
    quantity, unit = (ln.requests, "Calls") if ln.kind == "mcp" else (tokens, "Tokens")
    resource = ln.tool if ln.kind == "mcp" else ln.model
    charge = ln.charge_usd.quantize(Q6)
    return {
        "BilledCost": charge,
        "EffectiveCost": charge,
        "ListCost": (ln.cost_usd + ln.allocated_usd).quantize(Q6),
        "ContractedCost": charge,
        "BillingCurrency": cb.currency,
        "BillingAccountId": ln.cost_center or ln.department,
        "BillingAccountName": names.get(ln.department, ln.department),
        "BillingPeriodStart": start,
        "BillingPeriodEnd": end,
        "ChargePeriodStart": start,
        "ChargePeriodEnd": end,
        "ChargeCategory": "Purchase" if shared else "Usage",
        "ChargeClass": "Correction" if ln.adjustment else "",
        "ChargeFrequency": "Recurring" if shared else "Usage-Based",
        "ChargeDescription": _description(ln),
        "ServiceName": SERVICES.get(ln.kind, ln.kind),
        "ServiceCategory": "AI and Machine Learning",
        "ProviderName": ln.provider or ISSUER,
        "PublisherName": ln.provider or ISSUER,
        "InvoiceIssuerName": ISSUER,
        "ResourceId": f"{ln.provider}/{resource}" if resource else "",
        "ResourceName": resource,
        "ResourceType": "" if shared else ("Tool" if ln.kind == "mcp" else "Model"),
        "SkuId": f"{ln.provider}/{ln.kind}/{resource}" if resource else "",
        "ConsumedQuantity": "" if shared else quantity,
        "ConsumedUnit": "" if shared else unit,
        "PricingCategory": "" if shared else "Standard",  # list prices of the price book, on demand
        "PricingQuantity": "" if shared else quantity,
        "PricingUnit": "" if shared else unit,
        "SubAccountId": ln.team,
        "SubAccountName": ln.team,
        "Tags": tags_json(ln.tags),
        "x_Department": ln.department,
        "x_DepartmentName": names.get(ln.department, ln.department),
        "x_Team": ln.team,
        "x_CostCenter": ln.cost_center,
        "x_Project": ln.project,
        "x_Kind": ln.kind,
        "x_Requests": ln.requests,
        "x_InputTokens": ln.input_tokens,
        "x_CachedInputTokens": ln.cached_input_tokens,
        "x_OutputTokens": ln.output_tokens,
        "x_ReasoningTokens": ln.reasoning_tokens,
        "x_ToolCalls": ln.tool_calls,
        "x_UsageCost": ln.cost_usd.quantize(Q6),
        "x_AllocatedCost": ln.allocated_usd.quantize(Q6),
        "x_Markup": ln.markup_usd.quantize(Q6),
        "x_Adjustment": ln.adjustment,
    }


def focus_rows(cb: Chargeback) -> Iterator[list[Any]]:
    names = {d.department: d.name for d in cb.departments}
    for ln in cb.lines:
        rec = focus_record(cb, ln, names)
        yield [rec[c] for c in FOCUS_COLUMNS]


__all__ = ["FOCUS_COLUMNS", "focus_record", "focus_rows", "tags_json"]
