"""The chargeback as FinOps FOCUS rows, version 1.2 (default) or 1.3; our own columns start
with x_ and come after every FOCUS column.

One row per chargeback line, or per SKU of a line billed along more than text (cached input,
cache writes, audio, image, tools, a service or long-context tier: focus_dimensions.py), so
BilledCost adds up to the chargeback CSV's charge_usd exactly.

Who is who. Meterline's chargeback is an internal invoice: the platform team (Meterline)
makes AI services available to departments and bills them, and the upstream providers (an
LLM API, an MCP server) are where the service comes from. So:
- ProviderName = InvoiceIssuerName = Meterline (1.3: ServiceProviderName too). FOCUS reads a
  row whose provider differs from its invoice issuer as a third-party (marketplace) charge,
  which MUST bill 0 (BilledCost-C-005-C); these rows carry the department's bill.
- PublisherName = the upstream that produced the service (1.3: HostProviderName, the upstream
  that runs it). A line of shared costs only has Meterline as its publisher.
- InvoiceId = the department's monthly statement number (`statement_number`), so a row ties
  to the document its department head receives. Usage no department could take (billed 0,
  its cost spread through the shared-cost pool) is listed under ML-<month>-UNALLOCATED,
  with the fixed shared costs when no department takes the pool; its BillingAccountId is
  `unallocated`.

Money: BilledCost = EffectiveCost = the line's charge (usage + allocated shared costs +
markup). ListCost and ContractedCost are of the line's usage alone, at list prices and at the
department's rate card, with ListUnitPrice and ContractedUnitPrice (focus_prices.py: a line
billed by a card is a row per rate, a graduated tier its own row at its own rate).
ChargeCategory is `Usage` for every line: a line that only carries a department's share of
the fixed shared costs is its use of the platform for the month (ChargeFrequency `Recurring`,
quantity 1 Month), not a purchase that covers future charges (FOCUS gives those EffectiveCost 0,
and the validator reads every `Purchase` row that way). Usage of a closed month billed in a
later one has ChargeClass `Correction`.

Quantities: tokens (input + output) for LLM and embedding calls, calls for MCP tools. FOCUS
types them Decimal, and a reader that infers types from CSV (the official validator does)
takes `729` for an integer, so they are written with one decimal place (`729.0`).

FOCUS 1.3 split cost allocation: the shared-cost pool (fixed shared costs plus usage no
department owns) is the origin charge, and a line that takes part of it is an allocated
charge. Such a row names the allocation (`AllocatedMethodId` = meterline-<allocation>), its
share of the pool (`AllocatedMethodDetails`), and what the cost lands on (`AllocatedResource*`:
department/team/project). Meterline keeps the share on the consumer's usage line rather than in
a row of its own, so one line is the consumer's own usage and its share at once; x_UsageCost
and x_AllocatedCost tell the two apart.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import orjson

from meterline.costing import Chargeback, ChargebackLine

from .chargeback import Q6
from .focus_credits import credit_records
from .focus_dimensions import LineKey, LineParts, line_key, split
from .focus_prices import tier_rows, with_unit_prices
from .numbering import statement_number

Parts = dict[LineKey, LineParts]

VERSIONS = ("1.2", "1.3")
_COMMON = [
    "BilledCost",
    "EffectiveCost",
    "ListCost",
    "ContractedCost",
    "ListUnitPrice",
    "ContractedUnitPrice",
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
    "InvoiceId",
    "InvoiceIssuerName",
    "ProviderName",
    "PublisherName",
    "ServiceName",
    "ServiceCategory",
    "ServiceSubcategory",
    "ResourceId",
    "ResourceName",
    "ResourceType",
    "SkuId",
    "SkuPriceId",
    "SkuMeter",
    "SkuPriceDetails",
    "ConsumedQuantity",
    "ConsumedUnit",
    "PricingCategory",
    "PricingQuantity",
    "PricingUnit",
    "PricingCurrency",
    "PricingCurrencyListUnitPrice",
    "PricingCurrencyContractedUnitPrice",
    "PricingCurrencyEffectiveCost",
    "SubAccountId",
    "SubAccountName",
    "Tags",
]
_V13 = [
    "ServiceProviderName",
    "HostProviderName",
    "AllocatedMethodId",
    "AllocatedMethodDetails",
    "AllocatedResourceId",
    "AllocatedResourceName",
    "AllocatedTags",
]
X_COLUMNS = [
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
COLUMNS = {"1.2": [*_COMMON, *X_COLUMNS], "1.3": [*_COMMON, *_V13, *X_COLUMNS]}
FOCUS_COLUMNS = COLUMNS["1.2"]
MONEY_COLUMNS = (
    "BilledCost",
    "EffectiveCost",
    "ListCost",
    "ContractedCost",
    "x_UsageCost",
    "x_AllocatedCost",
    "x_Markup",
    "PricingCurrencyEffectiveCost",
)
# Per token or call: more than six places.
PRICE_COLUMNS = ("ListUnitPrice", "ContractedUnitPrice", "PricingCurrencyListUnitPrice", "PricingCurrencyContractedUnitPrice")
QUANTITY_COLUMNS = ("ConsumedQuantity", "PricingQuantity")
INTEGER_COLUMNS = tuple(X_COLUMNS[X_COLUMNS.index("x_Requests") : X_COLUMNS.index("x_ToolCalls") + 1])
TIME_COLUMNS = ("BillingPeriodStart", "BillingPeriodEnd", "ChargePeriodStart", "ChargePeriodEnd")

# One ServiceName per kind, each with the one ServiceSubcategory that fits it best
# (ServiceName-C-008-C: a service name has one and only one subcategory).
SERVICES = {
    "llm": ("LLM inference", "Generative AI"),
    "embedding": ("Embeddings", "Generative AI"),
    "mcp": ("MCP tools", "AI Platforms"),
    "shared": ("Shared AI platform", "AI Platforms"),
    "commitment": ("Committed AI spend", "AI Platforms"),  # a commitment's shortfall (rate_cards.py)
}
ISSUER = "Meterline"
Q1 = Decimal("0.0")


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
    if ln.kind == "commitment":
        return f"Shortfall below the {ln.tool}"
    what = f"{ln.kind} calls to {ln.tool or ln.model or 'unknown'}"
    who = f" by team {ln.team}" if ln.team else ""
    late = " (late usage of a closed month)" if ln.adjustment else ""
    return f"{what}{who}{late}"


def _pool(cb: Chargeback) -> Decimal:
    """What the departments took of the shared-cost pool (the origin charge in 1.3's terms)."""
    return sum((ln.allocated_usd for ln in cb.lines if ln.allocated_usd > 0), Decimal(0))


def focus_record(
    cb: Chargeback,
    ln: ChargebackLine,
    names: dict[str, str],
    *,
    version: str = "1.2",
    allocation: str = "proportional",
    pool: Decimal | None = None,
) -> dict[str, Any]:
    start, end = _month_bounds(cb.period)
    shared = ln.kind in ("shared", "commitment")  # a month of the platform, or of a committed minimum
    tokens = ln.input_tokens + ln.output_tokens
    quantity, unit = (ln.requests, "Calls") if ln.kind == "mcp" else (tokens, "Tokens")
    if shared:  # one month of the department's share of the platform
        quantity, unit = 1, "Month"
    resource = ln.tool if ln.kind == "mcp" else ln.model
    charge = ln.charge_usd.quantize(Q6)
    service, subcategory = SERVICES.get(ln.kind, (ln.kind, "Other (AI and Machine Learning)"))
    publisher = ln.provider or ISSUER
    at_list = (ln.cost_usd + ln.allocated_usd) if shared else ln.cost_usd  # a shared row: its share
    contracted = ln.charge_usd if ln.kind == "commitment" else ln.rated_usd if ln.rated_usd is not None else at_list
    rec: dict[str, Any] = {
        "BilledCost": charge,
        "EffectiveCost": charge,
        "ListCost": at_list.quantize(Q6),
        "ContractedCost": contracted.quantize(Q6),
        "ListUnitPrice": None,  # filled per row, once lines are split (focus_prices.py)
        "ContractedUnitPrice": None,
        "BillingCurrency": cb.currency,
        "BillingAccountId": ln.cost_center or ln.department or "unallocated",
        "BillingAccountName": names.get(ln.department, ln.department),
        "BillingPeriodStart": start,
        "BillingPeriodEnd": end,
        "ChargePeriodStart": start,
        "ChargePeriodEnd": end,
        "ChargeCategory": "Usage",
        "ChargeClass": "Correction" if ln.adjustment else None,
        "ChargeFrequency": "Recurring" if shared else "Usage-Based",
        "ChargeDescription": _description(ln),
        "InvoiceId": statement_number(cb.period, ln.department),
        "InvoiceIssuerName": ISSUER,
        "ProviderName": ISSUER,
        "PublisherName": publisher,
        "ServiceName": service,
        "ServiceCategory": "AI and Machine Learning",
        "ServiceSubcategory": subcategory,
        "ResourceId": f"{ln.provider}/{resource}" if resource else None,
        "ResourceName": resource or None,
        "ResourceType": None if shared else ("Tool" if ln.kind == "mcp" else "Model"),
        "SkuId": f"{ln.provider}/{ln.kind}/{resource}" if resource else None,
        "ConsumedQuantity": Decimal(quantity).quantize(Q1),
        "ConsumedUnit": unit,
        "PricingCategory": "Standard",  # list prices of the price book, on demand
        "PricingQuantity": Decimal(quantity).quantize(Q1),
        "PricingUnit": unit,
        "SubAccountId": ln.team or None,
        "SubAccountName": ln.team or None,
        "Tags": tags_json(ln.tags),
    }
    if version == "1.3":
        pool = _pool(cb) if pool is None else pool
        allocated = ln.allocated_usd > 0 and pool > 0
        target = "/".join(x for x in (ln.department, ln.team, ln.project) if x)
        rec |= {
            "ServiceProviderName": ISSUER,
            "HostProviderName": publisher,
            "AllocatedMethodId": f"meterline-{allocation}" if allocated else None,
            "AllocatedMethodDetails": _method_details(ln.allocated_usd, ln.cost_usd, pool) if allocated else None,
            "AllocatedResourceId": target if allocated else None,
            "AllocatedResourceName": target if allocated else None,
            "AllocatedTags": tags_json(ln.tags) if allocated else None,
        }
    rec |= {
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
    return rec


def _method_details(allocated: Decimal, usage: Decimal, pool: Decimal) -> str:
    """A row's share of the pool, and the usage it was shared by (written from Decimals:
    JSON numbers need no float on the way out)."""
    ratio = (allocated / pool).quantize(Decimal("0.000000001"))
    unit = f"{usage.quantize(Q6):f}"
    return (
        f'{{"Elements":[{{"AllocatedRatio":{ratio:f},"UsageUnit":"USD","UsageQuantity":{unit}}}]}}'
    )


def focus_records(
    cb: Chargeback, *, version: str = "1.2", allocation: str = "proportional", parts: Parts | None = None
) -> Iterator[dict[str, Any]]:
    """`parts`: the lines' costs by billed dimension (focus_dimensions.line_parts); with them a
    line billed along more than text is one row per SKU."""
    names = {d.department: d.name for d in cb.departments}
    pool = _pool(cb)
    for ln in cb.lines:
        rec = focus_record(cb, ln, names, version=version, allocation=allocation, pool=pool)
        if ln.rated_tiers:  # billed by its rate card: a row per rate, not per SKU of the price book
            rows = tier_rows(rec, ln)
        else:
            rows = split(rec, ln, parts.get(line_key(ln))) if parts else iter((rec,))
        for row in rows:
            if row is not rec and row.get("AllocatedMethodDetails"):  # a line split in rows: each its own share
                row["AllocatedMethodDetails"] = _method_details(row["x_AllocatedCost"], row["x_UsageCost"], pool)
            yield with_unit_prices(row, cb.exchange_rate)
    yield from credit_records(cb, names, COLUMNS[version], _month_bounds(cb.period))  # focus_credits.py


def focus_rows(
    cb: Chargeback, *, version: str = "1.2", allocation: str = "proportional", parts: Parts | None = None
) -> Iterator[list[Any]]:
    columns = COLUMNS[version]
    for rec in focus_records(cb, version=version, allocation=allocation, parts=parts):
        yield [rec[c] for c in columns]


__all__ = [
    "COLUMNS",
    "FOCUS_COLUMNS",
    "MONEY_COLUMNS",
    "PRICE_COLUMNS",
    "VERSIONS",
    "focus_record",
    "focus_records",
    "focus_rows",
    "tags_json",
]
