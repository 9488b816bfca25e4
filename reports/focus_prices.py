"""FOCUS unit prices: `ListUnitPrice` and `ContractedUnitPrice` on every usage row, and a row per
rate for a line billed by a rate card, so a graduated tier shows as its own rate.

What the prices are of. FOCUS wants `ListCost = ListUnitPrice x PricingQuantity` and
`ContractedCost = ContractedUnitPrice x PricingQuantity` on every usage row, and `BilledCost`
is what the department is invoiced. So on a usage row:
- `ListCost` is the row's usage at the price book (list prices), `ContractedCost` the same
  usage at the department's rate card (the price book where no card rate applies). Neither
  holds the row's share of the shared costs (`x_AllocatedCost`) or the markup (`x_Markup`):
  those are in `BilledCost` (= `EffectiveCost`) only.
- A rate-card line is one row per rate it was billed at (a graduated line that crossed a
  tier boundary: one per tier; hours before the card, at cost: one more). Its
  `ContractedUnitPrice` is the card's rate per token (or per call), exactly, and its
  `ContractedCost` that rate times the row's tokens, exactly: it is not rounded to six places.
  The row's other money (billed, allocated, markup) is the line's, split in proportion to the
  rows' contracted cost; its list cost and usage cost in proportion to their tokens. Both
  splits add up to the line to the micro-dollar (the largest row takes what rounding left).
- Elsewhere a row mixes rates (input and output tokens in one row, say), so its unit price is
  its cost per unit, to 28 significant digits: it times PricingQuantity gives the cost to within
  1e-25 of it, where the validator allows 1e-9.

A shared-costs row (one Month of the platform) has its share as list and contracted cost, a
commitment's shortfall its shortfall, each with that as the unit price of its one Month.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from meterline.costing import ChargebackLine

from .chargeback import Q6
from .focus_dimensions import shares

ZERO = Decimal(0)
BY_AMOUNT = ("BilledCost", "EffectiveCost", "x_AllocatedCost", "x_Markup")
BY_QUANTITY = ("ListCost", "x_UsageCost")
COUNTS = ("x_Requests", "x_InputTokens", "x_CachedInputTokens", "x_OutputTokens", "x_ReasoningTokens", "x_ToolCalls")


def tier_rows(rec: dict[str, Any], ln: ChargebackLine) -> Iterator[dict[str, Any]]:
    """The line's record as one row per rate of its rate card (itself when it has no card)."""
    tiers = ln.rated_tiers
    if not tiers or not rec.get("SkuId"):
        yield rec
        return
    amounts = [max(t.amount, ZERO) for t in tiers]
    quantities = [t.quantity for t in tiers]
    by_amount = {c: shares(rec[c], amounts) for c in BY_AMOUNT}
    by_quantity = {c: shares(rec[c], quantities) for c in BY_QUANTITY}
    rated = [t for t in tiers if t.unit_price is not None]
    for i, t in enumerate(tiers):
        row = dict(rec)
        for col, values in (by_amount | by_quantity).items():
            row[col] = values[i]
        qty = t.quantity if t.quantity % 1 else t.quantity.quantize(Decimal("0.0"))
        row["ConsumedQuantity"] = row["PricingQuantity"] = qty
        if t.unit_price is None:  # hours no card rate matched: at the price book
            row["ContractedCost"] = row["ListCost"]
            row["ChargeDescription"] = f"{rec['ChargeDescription']}: at cost, no rate card rate"
        else:
            row["ContractedUnitPrice"] = t.unit_price
            row["ContractedCost"] = t.amount if _places(t.amount) > 6 else t.amount.quantize(Q6)
            row["SkuId"] = f"{rec['SkuId']}/tier-{rated.index(t) + 1}" if len(rated) > 1 else rec["SkuId"]
            row["ChargeDescription"] = f"{rec['ChargeDescription']}: {_rate_text(t.unit_price, rec['PricingUnit'])}"
        if i:
            row |= dict.fromkeys(COUNTS, 0)  # the x_ counts stay on the first row, as in the CSV
        yield row


def with_unit_prices(rec: dict[str, Any], exchange_rate: Decimal = Decimal(1)) -> dict[str, Any]:
    """Fill the row's unit prices from its costs and quantity, its SKU price, and the same
    prices in the price book's currency (`exchange_rate`: billing currency units per USD)."""
    sku = None
    if rec["ChargeCategory"] in ("Usage", "Purchase"):
        qty = rec["PricingQuantity"]
        if not qty and (rec["ListCost"] or rec["ContractedCost"]):
            # Cost without tokens (a call priced per request): priced per request instead.
            qty = Decimal(max(int(rec.get("x_Requests") or 0), 1)).quantize(Decimal("0.0"))
            rec["PricingQuantity"], rec["PricingUnit"] = qty, "Requests"
        for price, cost in (("ListUnitPrice", "ListCost"), ("ContractedUnitPrice", "ContractedCost")):
            if rec.get(price) is None:
                rec[price] = _per_unit(rec[cost], qty)
        sku = rec.get("SkuId")
    # One price per SKU is in force in the price book (or the card) at a time, and what it was
    # is the row's unit price: the SKU price is named by its SKU, and counts its PricingUnit.
    rec["SkuPriceId"], rec["SkuMeter"], rec["SkuPriceDetails"] = sku, rec["PricingUnit"] if sku else None, None
    rec.update(in_pricing_currency(rec, exchange_rate))
    return rec


def in_pricing_currency(rec: dict[str, Any], exchange_rate: Decimal) -> dict[str, Any]:
    """The row's unit prices and effective cost in USD, the price book's currency, whatever the
    chargeback is billed in: the amounts divided by the month's rate (exactly the same in a
    USD chargeback; money to six places, unit prices to 28 significant digits)."""
    def usd(value: Decimal | None, *, money: bool = False) -> Decimal | None:
        if value is None or exchange_rate == 1:
            return value
        out = value / exchange_rate
        return out.quantize(Q6) if money else out.normalize()

    return {
        "PricingCurrency": "USD",
        "PricingCurrencyListUnitPrice": usd(rec.get("ListUnitPrice")),
        "PricingCurrencyContractedUnitPrice": usd(rec.get("ContractedUnitPrice")),
        "PricingCurrencyEffectiveCost": usd(rec["EffectiveCost"], money=True),
    }


def _places(d: Decimal) -> int:
    exponent = d.as_tuple().exponent
    return -exponent if isinstance(exponent, int) else 0


def _per_unit(cost: Decimal, qty: Decimal) -> Decimal:
    if not qty:
        return ZERO
    return (cost / qty).normalize() if cost else ZERO


def _rate_text(unit_price: Decimal, unit: str) -> str:
    if unit == "Tokens":
        return f"at {(unit_price * 1_000_000).normalize():f} per 1M tokens"
    return f"at {unit_price.normalize():f} per {unit.lower().rstrip('s')}"


__all__ = ["in_pricing_currency", "tier_rows", "with_unit_prices"]
