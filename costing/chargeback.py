"""Chargeback: what each department is billed for a month, computed exactly.

A month's lines are its usage per department, team, project, kind, provider, model and tool
(split further by the adjustment flag and the calls' tags). On top of usage:

- Shared costs: the fixed `chargeback.shared_costs` plus the usage no department owns (lines
  with an empty department) form a pool, spread over departments by `allocation`:
  `proportional` to their usage (no usage at all: evenly), `even` over the configured
  departments, or by fixed `weights`. A department's share lands on its lines pro rata to
  their cost (`allocated_usd`); a department without usage gets one `kind=shared` line for it.
  Unattributed lines keep their cost and carry its negative as `allocated_usd`, so they are
  billed 0 and their cost is billed once, through the pool. With no department to take the
  pool (none configured, weights all zero) it stays on department "" (unallocated).
- Markup (negative: discount) per department, in percent of cost plus allocated.
- Currency: with `chargeback.currency` other than USD, every amount is converted at the
  month's rate from `exchange_rates` (the `_usd` column names stay, a `currency` column says
  what they hold).

The arithmetic runs on Fractions, so nothing is lost before the one rounding step, which is
the largest-remainder method at every level: each money column of a department is rounded
to six places so the departments add up to the column's rounded total, and the department's
lines to that; a department's charge is the sum of its lines (six places), and its `billed`
amount is its exact charge rounded to cents so the departments add up to the month's total.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from decimal import Decimal
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import orjson
import sqlalchemy as sa

from .credit_ledger import period_credits
from .errors import ConfigError
from .rate_cards import COMMITMENT, Rated, commitment, rated_lines
from .tables import PERIODS, ROLLUPS, PeriodSnapshot

if TYPE_CHECKING:  # config imports months, which closes a month with compute(): no runtime import
    from .config import Settings

LINE_DIMS = ["department", "team", "project", "kind", "provider", "model", "tool", "adjustment", "tags"]
LINE_SUMS = [
    "requests",
    "input_tokens",
    "cached_input_tokens",
    "output_tokens",
    "reasoning_tokens",
    "tool_calls",
    "cost_pico",
]
MONEY = ("cost_usd", "allocated_usd", "markup_usd")
PLACES = 6  # line items keep six decimals
CENTS = 2
SHARED = "shared"  # the kind of a line that only carries a department's share of shared costs


@dataclass
class RatedTier:
    """A line's usage at one rate of its rate card, in the units FOCUS prices by (tokens, or
    calls for a per-call rate), in the chargeback's currency and exact."""

    unit_price: Decimal | None  # per token or call; None: hours no rate matched, billed at cost
    quantity: Decimal
    amount: Decimal  # unit_price x quantity (at cost: the cost)


@dataclass
class ChargebackLine:
    period: str
    department: str
    cost_center: str
    team: str
    project: str
    kind: str
    provider: str
    model: str
    tool: str
    requests: int = 0
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    tool_calls: int = 0
    cost_usd: Decimal = Decimal("0.000000")
    allocated_usd: Decimal = Decimal("0.000000")
    markup_usd: Decimal = Decimal("0.000000")
    adjustment: bool = False  # usage of a closed month, billed in this one
    tags: str = ""
    credit_usd: Decimal = Decimal("0.000000")  # credits drawn by the line's calls (costing/credits.py)
    rated_usd: Decimal | None = None  # its usage at the department's rate card (rate_cards.py); None: at cost
    rated_tiers: list[RatedTier] = field(default_factory=list)  # rated_usd rate by rate, exact

    @property
    def charge_usd(self) -> Decimal:
        return self.cost_usd + self.allocated_usd + self.markup_usd

    @property
    def billed_usd(self) -> Decimal:
        return self.charge_usd - self.credit_usd


@dataclass
class DepartmentCharge:
    department: str  # "" = usage and costs no department could take
    name: str
    cost_center: str
    markup_percent: Decimal
    cost_usd: Decimal
    allocated_usd: Decimal
    markup_usd: Decimal
    charge_usd: Decimal  # six places, the sum of its lines
    billed: Decimal  # cents, charge less credits; the departments' billed amounts add up to Chargeback.total
    credit_usd: Decimal = Decimal("0.000000")  # six places, the credits its lines drew


@dataclass
class Chargeback:
    period: str
    currency: str
    exchange_rate: Decimal  # units of `currency` per USD (1 for USD)
    shared_costs: Decimal  # the fixed part of the pool, in `currency`
    lines: list[ChargebackLine]
    departments: list[DepartmentCharge]
    total: Decimal  # cents
    closed_at: str | None = None  # set when read from a closed month's snapshot
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = _jsonable(asdict(self))
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Chargeback:
        return cls(
            period=d["period"],
            currency=d["currency"],
            exchange_rate=Decimal(d["exchange_rate"]),
            shared_costs=Decimal(d["shared_costs"]),
            lines=[_from(ChargebackLine, x) for x in d["lines"]],
            departments=[_from(DepartmentCharge, x) for x in d["departments"]],
            total=Decimal(d["total"]),
            closed_at=d.get("closed_at"),
            warnings=list(d.get("warnings", [])),
        )


def _jsonable(v: Any) -> Any:
    if isinstance(v, Decimal):
        return f"{v:f}"
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_jsonable(x) for x in v]
    return v


def _from(cls: type, d: dict[str, Any]) -> Any:
    kw: dict[str, Any] = {}
    for f in fields(cls):
        if f.name == "rated_tiers":
            kw[f.name] = [_from(RatedTier, t) for t in d.get(f.name, [])]
        elif f.name in d:
            money = f.type == "Decimal" or (f.type == "Decimal | None" and d[f.name] is not None)
            kw[f.name] = Decimal(d[f.name]) if money else d[f.name]
    return cls(**kw)


def exchange_rate(settings: Settings, period: str) -> Decimal:
    """Units of the chargeback currency per USD for a month (1 for USD)."""
    cb = settings.chargeback
    if cb.currency.upper() == "USD":
        return Decimal(1)
    rate = cb.exchange_rates.get(period)
    if rate is None:
        raise ConfigError(
            f"no exchange rate for {period} (add `{period}: <{cb.currency} per USD>`)",
            key="chargeback.exchange_rates",
            path=settings.path,
        )
    return rate


def compute(
    rows: Iterable[dict[str, Any]],
    settings: Settings,
    period: str,
    credits: dict[tuple[object, ...], int] | None = None,
    rated: dict[tuple[Any, ...], Rated] | None = None,
) -> Chargeback:
    """The chargeback of `period` from line sums (LINE_DIMS + LINE_SUMS, money in pico-USD),
    the credits the month's calls drew per line (keyed by LINE_DIMS, pico-USD) and the lines'
    usage at their departments' rate cards (rate_cards.py; unrated lines: at cost)."""
    cb = settings.chargeback
    rate = exchange_rate(settings, period)
    fr = Fraction(rate)
    depts = {d.id: d for d in settings.departments}
    lines: list[ChargebackLine] = []
    cost: list[Fraction] = []
    for r in sorted(rows, key=_order):
        lines.append(_line(period, r, depts))
        cost.append(Fraction(int(r["cost_pico"]), 10**12) * fr)
    alloc = [Fraction(0)] * len(lines)

    usage: dict[str, Fraction] = {}
    for ln, c in zip(lines, cost, strict=True):
        usage[ln.department] = usage.get(ln.department, Fraction(0)) + c
    fixed = sum((Fraction(s.monthly_usd) for s in cb.shared_costs), Fraction(0)) * fr
    shares = _shares(settings, usage)
    names = ", ".join(s.name for s in cb.shared_costs)
    if shares:
        pool = fixed + usage.get("", Fraction(0))
        for i, ln in enumerate(lines):
            if ln.department == "":
                alloc[i] = -cost[i]
        weight_sum = sum(shares.values())
        for dept, w in shares.items():
            part = pool * w / weight_sum
            if not part:
                continue
            mine = [i for i, ln in enumerate(lines) if ln.department == dept and cost[i]]
            if usage.get(dept):
                for i in mine:
                    alloc[i] += part * cost[i] / usage[dept]
            else:
                lines.append(_shared_line(period, dept, depts, names))
                cost.append(Fraction(0))
                alloc.append(part)
    elif fixed:
        lines.append(_shared_line(period, "", depts, names))
        cost.append(Fraction(0))
        alloc.append(fixed)

    pct = {d: _markup_percent(settings, d) for d in {ln.department for ln in lines}}
    # A rate card bills its rated usage instead of the cost: the difference is markup, and the
    # percent applies to rated usage plus shared costs.
    usage_at = _rated_usage(lines, cost, rated or {}, fr)
    markup = [
        (u - c) + (u + a) * Fraction(pct[ln.department]) / 100
        for ln, c, a, u in zip(lines, cost, alloc, usage_at, strict=True)
    ]
    _commitments(settings, period, lines, cost, alloc, markup, depts, fr)
    for ln in lines[len(usage_at) :]:  # a commitment's department may have no other line
        pct.setdefault(ln.department, _markup_percent(settings, ln.department))

    order = sorted({ln.department for ln in lines}, key=lambda d: (d == "", d))
    members = {d: [i for i, ln in enumerate(lines) if ln.department == d] for d in order}
    cost6 = _round_column(cost, members)
    if shares:
        # Unattributed lines give back exactly the cost they show, so they are billed 0; the
        # departments that take the pool get the fixed costs plus what those lines gave.
        given = {i: -cost6[i] for i in members.get("", [])}
        takers = {d: idx for d, idx in members.items() if d}
        alloc6 = given | _round_column(alloc, takers, split([fixed], PLACES)[0] - sum(given.values()))
    else:
        alloc6 = _round_column(alloc, members)
    markup6 = _round_column(markup, members)
    credit = _credits(lines, cost, alloc, markup, credits or {}, fr)
    credit6 = _round_column(credit, members)
    usage_at += [Fraction(0)] * (len(lines) - len(usage_at))  # commitment lines
    rated6 = _round_column(usage_at, members) if rated else {}
    for i, ln in enumerate(lines):
        ln.cost_usd, ln.allocated_usd, ln.markup_usd = cost6[i], alloc6[i], markup6[i]
        ln.credit_usd = credit6[i]
        at_card = rated.get(tuple(getattr(ln, d) for d in LINE_DIMS)) if rated else None
        if at_card is not None:
            ln.rated_usd = rated6[i]
            ln.rated_tiers = _tiers(at_card, fr)

    exact_charge = [sum((cost[i] + alloc[i] + markup[i] - credit[i] for i in members[d]), Fraction(0)) for d in order]
    billed = split(exact_charge, CENTS)
    departments = []
    for d, b in zip(order, billed, strict=True):
        dept_lines = [lines[i] for i in members[d]]
        cfg = depts.get(d)
        totals = {m: sum((getattr(ln, m) for ln in dept_lines), Decimal("0.000000")) for m in MONEY}
        departments.append(
            DepartmentCharge(
                department=d,
                name=(cfg.name or cfg.id) if cfg else (d or "(unallocated)"),
                cost_center=cfg.cost_center if cfg else "",
                markup_percent=pct[d],
                charge_usd=sum(totals.values(), Decimal("0.000000")),
                billed=b,
                credit_usd=sum((ln.credit_usd for ln in dept_lines), Decimal("0.000000")),
                **totals,
            )
        )
    warnings = []
    if not shares and (fixed or usage.get("")):
        warnings.append("shared costs and unattributed usage stay unallocated: no department to take them")
    return Chargeback(
        period=period,
        currency=cb.currency.upper(),
        exchange_rate=rate,
        shared_costs=split([fixed], PLACES)[0],
        lines=lines,
        departments=departments,
        total=sum(billed, Decimal("0.00")),
        warnings=warnings,
    )


def _tiers(rated: Rated, rate: Fraction) -> list[RatedTier]:
    """The line's pieces at each rate, in the chargeback's currency (rated ones first, cheapest
    tier last as a graduated card lists them)."""
    out = []
    for per, (quantity, usd) in sorted(rated.pieces.items(), key=lambda p: (p[0] is None, -(p[0] or 0))):
        out.append(RatedTier(None if per is None else _decimal(per * rate), _decimal(quantity), _decimal(usd * rate)))
    return out


def _decimal(x: Fraction) -> Decimal:
    """`x` exactly when it is a finite decimal of up to 28 digits (rates, token counts and
    pico-dollars at a decimal exchange rate are), else to 28 significant digits."""
    return Decimal(x.numerator) / Decimal(x.denominator)


def _rated_usage(
    lines: list[ChargebackLine], cost: list[Fraction], rated: dict[tuple[Any, ...], Rated], rate: Fraction
) -> list[Fraction]:
    out = []
    for ln, c in zip(lines, cost, strict=True):
        r = rated.get(tuple(getattr(ln, d) for d in LINE_DIMS)) if rated else None
        out.append(c if r is None else r.usd * rate)
    return out


def _commitments(
    settings: Settings,
    period: str,
    lines: list[ChargebackLine],
    cost: list[Fraction],
    alloc: list[Fraction],
    markup: list[Fraction],
    depts: dict[str, Any],
    rate: Fraction,
) -> None:
    """A line for each department whose month's charge falls short of its commitment."""
    if not settings.rate_cards:
        return
    for d in sorted({c.department for c in settings.rate_cards}):
        minimum = commitment(settings, d, period)
        if minimum is None:
            continue
        charge = sum((cost[i] + alloc[i] + markup[i] for i, ln in enumerate(lines) if ln.department == d), Fraction(0))
        short = minimum * rate - charge
        if short > 0:
            cfg = depts.get(d)
            lines.append(
                ChargebackLine(
                    period=period, department=d, cost_center=cfg.cost_center if cfg else "", team="", project="",
                    kind=COMMITMENT, provider="", model="", tool=f"monthly commitment {minimum}",
                )
            )  # fmt: skip
            cost.append(Fraction(0))
            alloc.append(Fraction(0))
            markup.append(short)


def _credits(
    lines: list[ChargebackLine],
    cost: list[Fraction],
    alloc: list[Fraction],
    markup: list[Fraction],
    drawn: dict[tuple[object, ...], int],
    rate: Fraction,
) -> list[Fraction]:
    """Each line's credit, exact: what its calls drew, never more than its charge (a discount
    below cost leaves that part of the credit unbilled)."""
    out = [Fraction(0)] * len(lines)
    if not drawn:
        return out
    for i, ln in enumerate(lines):
        got = drawn.get(tuple(getattr(ln, d) for d in LINE_DIMS))
        if got and ln.department:
            out[i] = max(Fraction(0), min(Fraction(got, 10**12) * rate, cost[i] + alloc[i] + markup[i]))
    return out


def _order(r: dict[str, Any]) -> tuple[Any, ...]:
    return (r["department"] == "", *(str(r[d]) for d in LINE_DIMS))


def _line(period: str, r: dict[str, Any], depts: dict[str, Any]) -> ChargebackLine:
    d = depts.get(r["department"])
    counts: dict[str, Any] = {s: int(r[s] or 0) for s in LINE_SUMS if s != "cost_pico"}
    return ChargebackLine(
        period=period,
        department=r["department"],
        cost_center=d.cost_center if d else "",
        team=r["team"],
        project=r["project"],
        kind=r["kind"],
        provider=r["provider"],
        model=r["model"],
        tool=r["tool"],
        adjustment=bool(r["adjustment"]),
        tags=r["tags"],
        **counts,
    )


def _shared_line(period: str, dept: str, depts: dict[str, Any], names: str) -> ChargebackLine:
    d = depts.get(dept)
    return ChargebackLine(
        period=period,
        department=dept,
        cost_center=d.cost_center if d else "",
        team="",
        project="",
        kind=SHARED,
        provider="",
        model="",
        tool=names,
    )


def _shares(settings: Settings, usage: dict[str, Fraction]) -> dict[str, Fraction]:
    """Who takes the pool and with which weight (empty: nobody)."""
    cb = settings.chargeback
    configured = [d.id for d in settings.departments]
    if cb.allocation == "weights":
        return {d: Fraction(w) for d, w in sorted(cb.weights.items()) if w > 0}
    if cb.allocation == "proportional":
        used = {d: u for d, u in sorted(usage.items()) if d and u > 0}
        if used:
            return used
    everyone = configured or sorted(d for d in usage if d)
    return {d: Fraction(1) for d in everyone}


def _markup_percent(settings: Settings, department: str) -> Decimal:
    if department == "":
        return Decimal(0)
    cb = settings.chargeback
    return cb.markup_percent.get(department, cb.default_markup_percent)


def _round_column(
    exact: list[Fraction], groups: dict[str, list[int]], total: Decimal | None = None
) -> dict[int, Decimal]:
    """Round one money column: per department first (adding up to `total`, default the
    column's rounded sum), then each department's lines to its rounded amount."""
    names = list(groups)
    per_group = split([sum((exact[i] for i in groups[g]), Fraction(0)) for g in names], PLACES, total)
    out: dict[int, Decimal] = {}
    for g, target in zip(names, per_group, strict=True):
        out.update(zip(groups[g], split([exact[i] for i in groups[g]], PLACES, target), strict=True))
    return out


def split(values: Sequence[Fraction], places: int, total: Decimal | None = None) -> list[Decimal]:
    """Round each value to `places` so the parts add up exactly to `total` (default: the
    values' sum rounded half-even); the units left over go to the largest remainders, ties to
    the first."""
    unit = 10**places
    scaled = [Fraction(v) * unit for v in values]
    floors = [math.floor(s) for s in scaled]
    target = round(sum(scaled, Fraction(0))) if total is None else int(Fraction(total) * unit)
    left = target - sum(floors)
    if values:
        # Normally 0 <= left <= len(values); a target set from other rounded amounts may be a
        # unit further off, which every part then shares.
        whole, left = divmod(left, len(values))
        floors = [f + whole for f in floors]
    for i in sorted(range(len(values)), key=lambda i: (floors[i] - scaled[i], i))[:left]:
        floors[i] += 1
    q = Decimal(1).scaleb(-places)
    return [(Decimal(f) * q).quantize(q) for f in floors]


def line_sums(db: sa.Engine | sa.Connection, period: str) -> list[dict[str, Any]]:
    """The month's rollups summed per chargeback line (money in pico-USD)."""
    t = ROLLUPS
    cols = [t.c[d] for d in LINE_DIMS]
    q = (
        sa.select(*cols, *(sa.func.sum(t.c[s]).label(s) for s in LINE_SUMS))
        .where(t.c.charge_period == period)
        .group_by(*cols)
    )
    if isinstance(db, sa.Connection):
        return [dict(r) for r in db.execute(q).mappings()]
    with db.connect() as conn:
        return [dict(r) for r in conn.execute(q).mappings()]


def snapshot(engine: sa.Engine, period: str) -> PeriodSnapshot | None:
    t = PERIODS
    with engine.connect() as conn:
        row = conn.execute(sa.select(t).where(t.c.period == period)).mappings().first()
    return PeriodSnapshot(**row) if row else None


def load_chargeback(engine: sa.Engine, settings: Settings, period: str) -> Chargeback:
    """A month's chargeback: the stored snapshot for a closed month, else computed now."""
    snap = snapshot(engine, period)
    if snap is not None:
        cb = Chargeback.from_dict(orjson.loads(snap.snapshot))
        cb.closed_at = snap.closed_at.strftime("%Y-%m-%dT%H:%M:%SZ")
        return cb
    return compute(
        line_sums(engine, period), settings, period, period_credits(engine, settings, period), rated_lines(engine, settings, period)
    )


__all__ = [
    "LINE_DIMS",
    "PLACES",
    "SHARED",
    "Chargeback",
    "ChargebackLine",
    "RatedTier",
    "DepartmentCharge",
    "compute",
    "exchange_rate",
    "line_sums",
    "load_chargeback",
    "split",
]
