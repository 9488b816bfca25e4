"""Rate cards: what a department is charged for its usage when that is not the cost.

A department's rate card (`rate_cards:`) lists rates for models, providers or tools (the first
that matches a line counts), each in Mtok (input + output tokens, in millions) or calls:

- `flat_usd`: every unit at one rate;
- `graduated`: the month's first `up_to` units at the first tier's rate, the next at the next
  tier's, and so on, in the order the calls came (so a tier boundary is crossed mid-month and
  the hour that crosses it is split);
- `volume`: every unit of the month at the rate of the tier the month's total falls in.

Cards are dated: a card counts from its `effective_from` day (UTC) until the department's next
card, hour by hour of the ledger; the month's tier counts start again with each card. Usage a
card does not match is charged at cost. A card changes the charge, never the recorded cost:
the chargeback keeps `cost_usd` and bills the difference (`rated - cost`) in `markup_usd`,
with the department's markup percent applied to the rated usage plus shared costs.

A monthly commitment (`commitment_usd_monthly`, from the card in force at the month's end) is a
minimum: a department whose month's charge falls short of it is billed the shortfall as a line
of its own (`kind=commitment`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from fnmatch import fnmatchcase
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from .tables import ROLLUPS

if TYPE_CHECKING:  # config imports months, which closes a month with the rated lines: no runtime import
    from .config import RateCardConfig, RateConfig, Settings, TierConfig

LINE_DIMS = ["department", "team", "project", "kind", "provider", "model", "tool", "adjustment", "tags"]
COMMITMENT = "commitment"  # the kind of a commitment's shortfall line
MTOK = 10**6


@dataclass
class Rated:
    """One chargeback line's usage at the rate card (USD, exact), and the units it was priced in."""

    usd: Fraction = Fraction(0)
    quantity: Fraction = Fraction(0)  # Mtok or calls the card priced
    unit: str = ""  # "mtok" or "call"; "" when no rate matched (charged at cost)
    # Its usage per rate, in the units FOCUS prices by (tokens or calls): USD per unit (None:
    # hours no card rate matched, charged at cost) -> [quantity, USD]. A graduated line that
    # crossed a tier boundary has one entry per tier.
    pieces: dict[Fraction | None, list[Fraction]] = field(default_factory=dict)

    def add(self, per_unit: Fraction | None, quantity: Fraction, usd: Fraction) -> None:
        piece = self.pieces.setdefault(per_unit, [Fraction(0), Fraction(0)])
        piece[0] += quantity
        piece[1] += usd
        self.usd += usd


def card_at(cards: list[RateCardConfig], day: date) -> tuple[int, RateCardConfig] | None:
    """The card in force on `day` (its index among `cards`, sorted by effective_from)."""
    found = None
    for i, c in enumerate(cards):
        if c.effective_from <= day:
            found = (i, c)
    return found


def cards_of(settings: Settings, department: str) -> list[RateCardConfig]:
    return sorted((c for c in settings.rate_cards if c.department == department), key=lambda c: c.effective_from)


def _matches(rate: RateConfig, line: dict[str, Any]) -> bool:
    if rate.kind is not None and rate.kind != line["kind"]:
        return False
    if rate.provider is not None and rate.provider != line["provider"]:
        return False
    if rate.model is not None and not fnmatchcase(line["model"], rate.model):
        return False
    return rate.tool is None or fnmatchcase(line["tool"], rate.tool)


def _units(rate: RateConfig, row: dict[str, Any]) -> Fraction:
    if rate.unit == "call":
        return Fraction(int(row["requests"] or 0))
    return Fraction(int(row["input_tokens"] or 0) + int(row["output_tokens"] or 0), MTOK)


def graduated(tiers: list[TierConfig], used: Fraction, units: Fraction) -> Fraction:
    """What `units` cost after `used` units of the month, tier by tier."""
    return sum((rate * n for rate, n in graduated_pieces(tiers, used, units)), Fraction(0))


def graduated_pieces(tiers: list[TierConfig], used: Fraction, units: Fraction) -> list[tuple[Fraction, Fraction]]:
    """How `units`, coming after `used` units of the month, fall into the tiers: (rate, units)."""
    out, pos, left = [], used, units
    for t in tiers:
        end = None if t.up_to is None else Fraction(t.up_to)
        if end is not None and pos >= end:
            continue
        room = left if end is None else min(left, end - pos)
        out.append((Fraction(t.rate_usd), room))
        left -= room
        pos += room
        if not left:
            break
    return out


def volume_rate(tiers: list[TierConfig], month_units: Fraction) -> Fraction:
    """The rate of the tier the month's total falls in."""
    for t in tiers:
        if t.up_to is None or month_units <= Fraction(t.up_to):
            return Fraction(t.rate_usd)
    return Fraction(tiers[-1].rate_usd)


def rate_hours(rows: Iterable[dict[str, Any]], settings: Settings) -> dict[tuple[Any, ...], Rated]:
    """Per chargeback line (LINE_DIMS), its usage at the rate cards, from hourly rows (`hour`,
    LINE_DIMS, input_tokens, output_tokens, requests, cost_pico). Lines of departments without
    a card are left out (charged at cost)."""
    cards = {d.id: cards_of(settings, d.id) for d in settings.departments}
    cards = {d: c for d, c in cards.items() if c}
    if not cards:
        return {}
    priced: list[tuple[Any, ...]] = []  # (hour, key, row, card index, rate index or None)
    month_units: dict[tuple[str, int, int], Fraction] = {}
    for r in rows:
        mine = cards.get(r["department"])
        if not mine:
            continue
        hour: datetime = r["hour"]
        found = card_at(mine, hour.date())
        key = tuple(bool(r[d]) if d == "adjustment" else r[d] for d in LINE_DIMS)
        if found is None:
            priced.append((hour, key, r, None, None))
            continue
        ci, card = found
        ri = next((i for i, rate in enumerate(card.rates) if _matches(rate, r)), None)
        priced.append((hour, key, r, ci, ri))
        if ri is not None:
            k = (r["department"], ci, ri)
            month_units[k] = month_units.get(k, Fraction(0)) + _units(card.rates[ri], r)
    used: dict[tuple[str, int, int], Fraction] = {}
    out: dict[tuple[Any, ...], Rated] = {}
    for _hour, key, r, ci, ri in sorted(priced, key=lambda p: (p[0], repr(p[1]))):
        rated = out.setdefault(key, Rated())
        if ci is None or ri is None:
            tokens = int(r["input_tokens"] or 0) + int(r["output_tokens"] or 0)
            at_cost = int(r["requests"] or 0) if r["kind"] == "mcp" else tokens
            rated.add(None, Fraction(at_cost), Fraction(int(r["cost_pico"] or 0), 10**12))
            continue
        rate = cards[r["department"]][ci].rates[ri]
        units = _units(rate, r)
        k = (r["department"], ci, ri)
        if rate.flat_usd is not None:
            pieces = [(Fraction(rate.flat_usd), units)]
        elif rate.graduated:
            pieces = graduated_pieces(rate.graduated, used.get(k, Fraction(0)), units)
        else:
            pieces = [(volume_rate(rate.volume, month_units[k]), units)]
        scale = MTOK if rate.unit == "mtok" else 1  # priced per Mtok, counted in tokens
        for per, n in pieces:
            rated.add(per / scale, n * scale, per * n)
        used[k] = used.get(k, Fraction(0)) + units
        rated.quantity += units
        rated.unit = rate.unit
    return out


def commitment(settings: Settings, department: str, period: str) -> Fraction | None:
    """The department's monthly commitment for `period` (the card in force at its end)."""
    y, m = int(period[:4]), int(period[5:])
    last = date(y + m // 12, m % 12 + 1, 1).toordinal() - 1
    found = card_at(cards_of(settings, department), date.fromordinal(last))
    if found is None or found[1].commitment_usd_monthly is None:
        return None
    return Fraction(found[1].commitment_usd_monthly)


def hourly_rows(db: sa.Engine | sa.Connection, period: str, departments: list[str]) -> list[dict[str, Any]]:
    """The month's rollups per hour and chargeback line, for the departments with a card."""
    t = ROLLUPS
    cols = [t.c.hour, *(t.c[d] for d in LINE_DIMS)]
    sums = [sa.func.sum(t.c[s]).label(s) for s in ("input_tokens", "output_tokens", "requests", "cost_pico")]
    q = sa.select(*cols, *sums).where(t.c.charge_period == period, t.c.department.in_(departments)).group_by(*cols)
    if isinstance(db, sa.Connection):
        rows = [dict(r) for r in db.execute(q).mappings()]
    else:
        with db.connect() as conn:
            rows = [dict(r) for r in conn.execute(q).mappings()]
    for r in rows:
        h = r["hour"]
        r["hour"] = h.replace(tzinfo=UTC) if h.tzinfo is None else h.astimezone(UTC)
    return rows


def rated_lines(db: sa.Engine | sa.Connection, settings: Settings, period: str) -> dict[tuple[Any, ...], Rated]:
    """The month's lines at their departments' rate cards (empty without cards)."""
    departments = sorted({c.department for c in settings.rate_cards})
    if not departments:
        return {}
    return rate_hours(hourly_rows(db, period, departments), settings)


__all__ = [
    "COMMITMENT",
    "Rated",
    "card_at",
    "commitment",
    "graduated",
    "graduated_pieces",
    "rate_hours",
    "rated_lines",
    "volume_rate",
]
