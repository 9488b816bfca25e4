"""A department's monthly statement: the invoice-like document finance sends its head.

`statement()` lays one department's chargeback lines out for people; `render_html()` and
`render_pdf()` turn it into a document (one Jinja template, templates/statement.html, printed
to PDF by WeasyPrint, so the HTML and the PDF are the same page).

What it shows, and how it ties to the chargeback CSV:
- the header: department, cost center, period, the statement number (`numbering`, the
  InvoiceId of the FOCUS rows), and DRAFT while the month is open;
- usage lines by team, then project, then model or MCP tool, with requests and tokens, each at
  its usage cost (`cost_usd`; lines that differ only in tags are one line here);
- adjustments: late usage of closed months billed this month, at their usage cost;
- the department's share of the shared costs (`allocated_usd`) and its markup (`markup_usd`,
  negative: a discount), each as one line;
- the credits its calls drew (the sum of its `credit_usd`), as a negative line;
- the total, which is the department's billed amount: its exact charge less its credits (the
  sum of its `billed_usd` in the CSV) rounded to the cent so the departments add up to the month. Every
  amount above is rounded to cents by the largest-remainder method so they add up to the
  total; when the month's rounding across departments moved this one by a cent, a "Rounding"
  line says so.
- the change against last month's billed amount.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from meterline.costing import ZERO, CostingError, Settings, largest_remainder

from .chargeback import chargeback_report
from .dimensions import dimension_costs, label
from .numbering import statement_number
from .trend import change_percent

CENT = Decimal("0.01")
TEMPLATES = Path(__file__).with_name("templates")


@dataclass(frozen=True)
class Item:
    """One model or tool of one team's project."""

    team: str
    project: str
    kind: str
    provider: str
    name: str  # the model, or the MCP tool
    requests: int
    input_tokens: int
    output_tokens: int
    exact: Decimal  # usage cost, six places
    amount: Decimal  # cents

    @property
    def unpriced(self) -> bool:
        return self.requests > 0 and self.exact == 0 and self.kind != "mcp"


@dataclass
class Statement:
    department: str
    name: str
    cost_center: str
    period: str
    number: str
    draft: bool
    currency: str
    items: list[Item]  # usage, ordered by team, project, then model or tool
    adjustments: list[Item]  # late usage of closed months
    shared: Decimal  # cents
    markup: Decimal  # cents
    markup_percent: Decimal
    rounding: Decimal  # cents; nonzero only when the month's rounding moved this department
    total: Decimal  # cents: the department's billed amount
    charge_usd: Decimal  # six places: the sum of its lines' charge_usd in the chargeback CSV
    previous_total: Decimal | None
    issued: str  # when the document was made (UTC)
    closed_at: str | None
    shared_names: str = ""
    credits: Decimal = ZERO  # cents, negative: the credits its calls drew
    credit_usd: Decimal = ZERO  # six places: the sum of its lines' credit_usd in the chargeback CSV
    shortfall: Decimal = ZERO  # cents: what its month fell short of its rate card's commitment
    rate_card: Decimal = ZERO  # cents: its rate card's charge less the cost of the usage it rated
    teams: list[tuple[str, list[tuple[str, list[Item]]]]] = field(default_factory=list)
    # The usage cost by billed dimension (label, cents), when any of it is more than text at
    # the default tier; then what of it was at another service tier or past a context threshold.
    dimensions: list[tuple[str, Decimal]] = field(default_factory=list)
    dimension_notes: list[tuple[str, Decimal]] = field(default_factory=list)

    @property
    def usage(self) -> Decimal:
        return sum((i.amount for i in self.items), ZERO)

    @property
    def adjustments_total(self) -> Decimal:
        return sum((i.amount for i in self.adjustments), ZERO)

    @property
    def change_percent(self) -> Decimal | None:
        return change_percent(self.total, self.previous_total)


def statement(
    engine: sa.Engine,
    settings: Settings,
    period: str,
    department: str,
    *,
    now: datetime | None = None,
) -> Statement:
    """The statement of `department` for `period` (CostingError for an unknown department)."""
    rep = chargeback_report(engine, settings, period, now=now)
    cb = rep.chargeback
    known = {d.id for d in settings.departments} | {
        d.department for d in cb.departments if d.department
    }
    if not department or department not in known:
        raise CostingError(
            f"no department {department!r} (departments: {', '.join(sorted(known)) or 'none configured'})"
        )
    charge = next((d for d in cb.departments if d.department == department), None)
    cfg = next((d for d in settings.departments if d.id == department), None)
    lines = [ln for ln in cb.lines if ln.department == department]

    grouped: dict[tuple[Any, ...], list[Any]] = {}
    for ln in lines:
        if ln.kind in ("shared", "commitment"):
            continue
        name = ln.tool if ln.kind == "mcp" else ln.model
        key = (ln.adjustment, ln.team, ln.project, ln.kind, ln.provider, name)
        acc = grouped.setdefault(key, [0, 0, 0, ZERO])
        acc[0] += ln.requests
        acc[1] += ln.input_tokens
        acc[2] += ln.output_tokens
        acc[3] += ln.cost_usd
    keys = sorted(grouped, key=lambda k: (k[0], k[1], k[2], k[5], k[3], k[4]))
    shared6 = sum((ln.allocated_usd for ln in lines), ZERO)
    markup6 = sum((ln.markup_usd for ln in lines), ZERO)
    credit6 = sum((ln.credit_usd for ln in lines), ZERO)
    # A commitment's shortfall is its own line; the markup line keeps the rest of the markup
    # (a rate card's difference from cost included).
    short6 = sum((ln.markup_usd for ln in lines if ln.kind == "commitment"), ZERO)
    card6 = sum((ln.rated_usd - ln.cost_usd for ln in lines if ln.rated_usd is not None), ZERO)
    markup6 -= short6 + card6
    cents = largest_remainder([grouped[k][3] for k in keys] + [card6, short6, shared6, markup6, -credit6], 2)
    total = charge.billed if charge else ZERO
    items = [
        Item(team=k[1], project=k[2], kind=k[3], provider=k[4], name=k[5], requests=grouped[k][0],
             input_tokens=grouped[k][1], output_tokens=grouped[k][2], exact=grouped[k][3], amount=c)
        for k, c in zip(keys, cents, strict=False)
    ]  # fmt: skip
    usage = [i for i, k in zip(items, keys, strict=True) if not k[0]]
    late = [i for i, k in zip(items, keys, strict=True) if k[0]]
    card, shortfall, shared, markup, credits = cents[-5], cents[-4], cents[-3], cents[-2], cents[-1]
    st = Statement(
        department=department,
        name=(cfg.name or cfg.id) if cfg else (charge.name if charge else department),
        cost_center=cfg.cost_center if cfg else (charge.cost_center if charge else ""),
        period=period,
        number=statement_number(period, department),
        draft=cb.closed_at is None,
        currency=cb.currency,
        items=usage,
        adjustments=late,
        shared=shared,
        markup=markup,
        markup_percent=charge.markup_percent if charge else ZERO,
        rounding=total - sum(cents, ZERO),
        total=total,
        charge_usd=charge.charge_usd if charge else ZERO,
        previous_total=rep.previous_billed.get(department),
        # A closed month's statement is final: it carries the closing time, not the print time.
        issued=_issued(cb.closed_at)
        if cb.closed_at
        else (now or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC"),
        closed_at=cb.closed_at,
        shared_names=", ".join(s.name for s in settings.chargeback.shared_costs),
        credits=credits,
        credit_usd=credit6,
        shortfall=shortfall,
        rate_card=card,
    )
    st.teams = _by_team(usage)
    exact = sum((i.exact for i in items), ZERO)
    st.dimensions, st.dimension_notes = by_dimension(engine, period, department, exact)
    return st


def by_dimension(
    engine: sa.Engine, period: str, department: str, usage: Decimal
) -> tuple[list[tuple[str, Decimal]], list[tuple[str, Decimal]]]:
    """The department's usage cost (`usage`, usage and adjustments, six places) by billed
    dimension in cents, largest first, adding up to it rounded; and the notes: the cost of its
    calls at a service tier other than the default, and past a long-context threshold. Nothing
    when all of it was text at the default tier."""
    dc = dimension_costs(engine, period, usage, where={"department": department})
    if not dc.billed_beyond_text:
        return [], []
    parts = [(label(k), v) for k, v in dc.by_dimension.items() if v]
    cents = largest_remainder([v for _, v in parts], 2)
    notes = [(f"at the {tier} service tier", v) for tier, v in dc.by_service_tier.items() if tier != "default" and v]
    if dc.long_context_usd:
        notes.append(("with a prompt past a long-context threshold (whole calls)", dc.long_context_usd))
    return [(name, c) for (name, _), c in zip(parts, cents, strict=True)], [(n, v.quantize(CENT)) for n, v in notes]


def _issued(closed_at: str) -> str:
    return closed_at.replace("T", " ")[:16] + " UTC"


def _by_team(items: list[Item]) -> list[tuple[str, list[tuple[str, list[Item]]]]]:
    teams: dict[str, dict[str, list[Item]]] = {}
    for i in items:
        teams.setdefault(i.team, {}).setdefault(i.project, []).append(i)
    return [(t, list(projects.items())) for t, projects in teams.items()]


def amount(value: Decimal | None, currency: str = "") -> str:
    """`1,234.56`, `-0.42`; "–" for no value."""
    if value is None:
        return "–"
    q = value.quantize(CENT)
    return f"{'-' if q < 0 else ''}{abs(q):,.2f}"


def count(value: int) -> str:
    return f"{value:,}"


@cache
def _environment() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["amount"] = amount
    env.filters["count"] = count
    return env


def render_html(st: Statement) -> str:
    """The statement as one self-contained HTML page (names escaped, styles inline)."""
    return _environment().get_template("statement.html").render(s=st, change=_change(st))


def _change(st: Statement) -> str:
    pct = st.change_percent
    if st.previous_total is None:
        return "no usage last month"
    if pct is None:
        return f"last month {amount(st.previous_total)}"
    return f"{'+' if pct > 0 else ''}{pct:.1f}% against last month ({amount(st.previous_total)})"


def render_pdf(st: Statement) -> bytes:
    """The same page printed to PDF by WeasyPrint (A4; the lines' table header repeats on
    every page, and a team's heading never ends a page)."""
    import weasyprint  # needs Pango from the OS: imported only when a PDF is asked for

    return weasyprint.HTML(string=render_html(st), base_url=str(TEMPLATES)).write_pdf()


FORMATS = ("pdf", "html")


def statement_file(st: Statement, fmt: str) -> bytes:
    if fmt == "pdf":
        return render_pdf(st)
    if fmt == "html":
        return render_html(st).encode("utf-8")
    raise CostingError(f"--format: a statement is pdf or html, not {fmt!r}")


def file_name(st: Statement, fmt: str) -> str:
    return f"statement-{st.number}.{fmt}"


def pdf_download(
    engine: sa.Engine, settings: Settings, period: str, department: str, *, now: datetime | None = None
) -> tuple[str, Callable[[], bytes]]:
    """A PDF statement's file name, and what makes it (run only when someone downloads it:
    rendering takes about a second)."""
    name = f"statement-{statement_number(period, department)}.pdf"
    return name, lambda: render_pdf(statement(engine, settings, period, department, now=now))


__all__ = [
    "FORMATS",
    "Item",
    "Statement",
    "file_name",
    "render_html",
    "render_pdf",
    "statement",
    "statement_file",
]
