"""FOCUS rows for credits: one `ChargeCategory` Credit row per team and month that drew
credits, with the credits as a negative BilledCost (and EffectiveCost, ContractedCost), as
FOCUS records a credit applied to an invoice. With them BilledCost adds up to the chargeback
CSV's `billed_usd` (charge less credits) exactly, and the usage rows keep their charge.

A credit is no usage: no quantity, unit, SKU or resource (FOCUS wants those null outside
Usage and Purchase rows), and ChargeFrequency `One-Time`.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from meterline.costing import Chargeback

from .chargeback import Q6
from .focus_prices import in_pricing_currency
from .numbering import statement_number

CREDIT_SERVICE = ("AI credits", "AI Platforms")  # its own ServiceName, with one subcategory
ISSUER = "Meterline"


def credit_records(cb: Chargeback, names: dict[str, str], columns: list[str], month: tuple[str, str]) -> Iterator[dict[str, Any]]:
    """The month's Credit rows, in the order of the departments and teams that drew credits."""
    drawn: dict[tuple[str, str], Decimal] = {}
    centers: dict[str, str] = {}
    for ln in cb.lines:
        if ln.credit_usd:
            k = (ln.department, ln.team)
            drawn[k] = drawn.get(k, Decimal(0)) + ln.credit_usd
            centers[ln.department] = ln.cost_center
    start, end = month
    for (dept, team), amount in drawn.items():
        credit = -amount.quantize(Q6)
        rec: dict[str, Any] = dict.fromkeys(columns)
        rec |= {
            "BilledCost": credit,
            "EffectiveCost": credit,
            "ListCost": Decimal(0).quantize(Q6),
            "ContractedCost": credit,
            "BillingCurrency": cb.currency,
            "BillingAccountId": centers[dept] or dept,
            "BillingAccountName": names.get(dept, dept),
            "BillingPeriodStart": start,
            "BillingPeriodEnd": end,
            "ChargePeriodStart": start,
            "ChargePeriodEnd": end,
            "ChargeCategory": "Credit",
            "ChargeFrequency": "One-Time",
            "ChargeDescription": f"Credits drawn by team {team}" if team else "Credits drawn",
            "InvoiceId": statement_number(cb.period, dept),
            "InvoiceIssuerName": ISSUER,
            "ProviderName": ISSUER,
            "PublisherName": ISSUER,
            "ServiceName": CREDIT_SERVICE[0],
            "ServiceCategory": "AI and Machine Learning",
            "ServiceSubcategory": CREDIT_SERVICE[1],
            "SubAccountId": team or None,
            "SubAccountName": team or None,
            "Tags": "{}",
            "x_Department": dept,
            "x_DepartmentName": names.get(dept, dept),
            "x_Team": team,
            "x_CostCenter": centers[dept],
            "x_Project": "",
            "x_Kind": "credit",
            "x_Requests": 0,
            "x_InputTokens": 0,
            "x_CachedInputTokens": 0,
            "x_OutputTokens": 0,
            "x_ReasoningTokens": 0,
            "x_ToolCalls": 0,
            "x_UsageCost": Decimal(0).quantize(Q6),
            "x_AllocatedCost": Decimal(0).quantize(Q6),
            "x_Markup": Decimal(0).quantize(Q6),
            "x_Adjustment": False,
        }
        if "ServiceProviderName" in columns:
            rec |= {"ServiceProviderName": ISSUER, "HostProviderName": ISSUER}
        rec |= in_pricing_currency(rec, cb.exchange_rate)
        yield {c: rec[c] for c in columns}


__all__ = ["CREDIT_SERVICE", "credit_records"]
