"""Credit grants and their draw-down, derived from the ledger: nothing else is recorded.

A grant gives a team or a department an amount that calls draw down before anything is
billed. It counts from `effective_from` up to (not including) its expiry or its revocation,
to the second. A `recurring: monthly` grant is granted again each month: its amount for a
month is the grant plus what was left of the month before, up to `rollover_max_usd`
(nothing carries over without it), and whatever is left at a month's end beyond that lapses.

Draw-down is a pure function of the grants and the ledger's spend in time order: each call's
cost draws from the grants it may use (its team's and its department's) that count at its
time, lowest `priority` first, then the earliest to end (expiry, revocation or, for a
recurring grant, the month's end), then team grants before department grants, then by id.
The ledger is read in hourly buckets (the rollups), and event by event in the hours where a
grant starts or stops other than on the hour; within a bucket the teams draw in order of
their ids (and a team's chargeback lines in order of their dimensions). The same ledger and grants always give the same draw-down, per grant, per day,
per team and per billing month (`Drawdown`), exact to the pico-dollar.

What is drawn never exceeds what was granted: each month's instance of a grant is drawn to
0 at most, and a rollover only moves what is left.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal

from .money import PICO, from_pico

Scope = tuple[str, str]  # ("department" | "team", id)
NEVER = datetime.max.replace(tzinfo=UTC)


def to_pico(amount: Decimal) -> int:
    return int(amount / PICO)


@dataclass(frozen=True, slots=True)
class Grant:
    id: str
    scope: Scope
    amount_pico: int
    effective_from: datetime
    expires: datetime | None = None
    priority: int = 0
    recurring: bool = False
    rollover_max_pico: int | None = None
    revoked_at: datetime | None = None
    source: str = "config"  # "config" (the `credits:` section) or "api" (the credit_grants table)

    @property
    def end(self) -> datetime:
        """The instant it stops counting (NEVER: it does not)."""
        ends = [t for t in (self.expires, self.revoked_at) if t is not None]
        return min(ends) if ends else NEVER

    @property
    def amount(self) -> Decimal:
        return from_pico(self.amount_pico)


@dataclass(slots=True)
class Instance:
    """A grant's amount for one span: the grant's whole life, or one month of a recurring grant."""

    grant: Grant
    period: str  # the month of a recurring grant's instance; "" for a one-off grant
    start: datetime
    end: datetime
    fresh_pico: int  # granted for this span
    carried_pico: int = 0  # rolled over from the month before
    drawn_pico: int = 0

    @property
    def amount_pico(self) -> int:
        return self.fresh_pico + self.carried_pico

    @property
    def remaining_pico(self) -> int:
        return self.amount_pico - self.drawn_pico

    def counts_at(self, ts: datetime) -> bool:
        return self.start <= ts < self.end

    def order(self) -> tuple[int, datetime, int, str]:
        return (self.grant.priority, self.end, 0 if self.grant.scope[0] == "team" else 1, self.grant.id)


@dataclass(frozen=True, slots=True)
class Spend:
    """Cost of one team at one time (an hour's bucket or one event): drawn by the grants that
    count at `ts`."""

    ts: datetime
    department: str
    team: str
    charge_period: str
    pico: int
    line: tuple[object, ...] = ()  # the rest of its chargeback line's dimensions (chargeback.LINE_DIMS)


@dataclass
class Drawdown:
    instances: list[Instance] = field(default_factory=list)
    # (grant id, day, department, team) -> pico drawn
    by_day: dict[tuple[str, date, str, str], int] = field(default_factory=dict)
    # (charge period, department, team) -> pico drawn by the calls billed in that month
    by_period: dict[tuple[str, str, str], int] = field(default_factory=dict)
    # (charge period, department, team, *line) -> pico drawn by one chargeback line's calls
    by_line: dict[tuple[object, ...], int] = field(default_factory=dict)
    until: datetime = NEVER

    def eligible(self, department: str, team: str) -> list[Instance]:
        """The instances a call of this team may draw from, in draw order."""
        mine = [i for i in self.instances if i.grant.scope in (("team", team), ("department", department))]
        return sorted(mine, key=Instance.order)

    def balance(self, scopes: Iterable[Scope], at: datetime) -> int:
        """What the grants of `scopes` that count at `at` have left (pico)."""
        wanted = set(scopes)
        return sum(i.remaining_pico for i in self.instances if i.grant.scope in wanted and i.counts_at(at))

    def drawn(self, grant_id: str) -> int:
        return sum(i.drawn_pico for i in self.instances if i.grant.id == grant_id)

    def granted(self, grant_id: str) -> int:
        """The fresh amounts of a grant's instances so far (rollovers are not new credit)."""
        return sum(i.fresh_pico for i in self.instances if i.grant.id == grant_id)

    def current(self, grant_id: str, at: datetime) -> Instance | None:
        return next((i for i in self.instances if i.grant.id == grant_id and i.counts_at(at)), None)


def _month(ts: datetime) -> str:
    return f"{ts.year:04d}-{ts.month:02d}"


def _month_start(period: str) -> datetime:
    return datetime(int(period[:4]), int(period[5:]), 1, tzinfo=UTC)


def _next(period: str) -> str:
    y, m = int(period[:4]), int(period[5:])
    return f"{y + m // 12:04d}-{m % 12 + 1:02d}"


class _Instances:
    """Every grant's instances up to a moment, made as time passes (a rollover needs the month
    before drawn first)."""

    def __init__(self, grants: Iterable[Grant]):
        self.all: list[Instance] = []
        self._next_month: dict[str, str] = {}  # recurring grant -> the month of its next instance
        self._last: dict[str, Instance] = {}
        self._grants = list(grants)
        for g in self._grants:
            if g.recurring:
                self._next_month[g.id] = _month(g.effective_from)
            elif g.effective_from < g.end:
                self.all.append(Instance(g, "", g.effective_from, g.end, g.amount_pico))

    def advance(self, ts: datetime) -> None:
        """Make every recurring instance that starts at or before `ts`."""
        for g in self._grants:
            if not g.recurring:
                continue
            month = self._next_month[g.id]
            while max(g.effective_from, _month_start(month)) <= ts and _month_start(month) < g.end:
                start = max(g.effective_from, _month_start(month))
                end = min(g.end, _month_start(_next(month)))
                prev = self._last.get(g.id)
                carry = 0
                if prev is not None and prev.end == start and g.rollover_max_pico:
                    carry = max(0, min(g.rollover_max_pico, prev.remaining_pico))
                inst = Instance(g, month, start, end, g.amount_pico, carry)
                self.all.append(inst)
                self._last[g.id] = inst
                month = _next(month)
            self._next_month[g.id] = month


def draw_down(grants: Iterable[Grant], spend: Iterable[Spend], until: datetime) -> Drawdown:
    """The draw-down of `grants` by `spend` (in any order; sorted here by time, then team)."""
    made = _Instances(grants)
    out = Drawdown(instances=made.all, until=until)
    for s in sorted(spend, key=lambda s: (s.ts, s.team, s.department, s.charge_period, repr(s.line))):
        if s.ts >= until:
            break
        made.advance(s.ts)
        left = s.pico
        if left <= 0:
            continue
        for inst in sorted((i for i in made.all if _may_draw(i, s)), key=Instance.order):
            take = min(inst.remaining_pico, left)
            if take <= 0:
                continue
            inst.drawn_pico += take
            left -= take
            k = (inst.grant.id, s.ts.date(), s.department, s.team)
            out.by_day[k] = out.by_day.get(k, 0) + take
            p = (s.charge_period, s.department, s.team)
            out.by_period[p] = out.by_period.get(p, 0) + take
            ln = (*p, *s.line)
            out.by_line[ln] = out.by_line.get(ln, 0) + take
            if not left:
                break
    made.advance(until)
    return out


def _may_draw(inst: Instance, s: Spend) -> bool:
    return inst.grant.scope in (("team", s.team), ("department", s.department)) and inst.counts_at(s.ts)


def boundaries(grants: Iterable[Grant]) -> list[datetime]:
    """Instants a grant starts or stops counting that are not on the hour: the ledger is read
    event by event in their hours."""
    found: set[datetime] = set()
    for g in grants:
        for t in (g.effective_from, g.expires, g.revoked_at):
            if t is not None and (t.minute or t.second or t.microsecond):
                found.add(t)
    return sorted(found)


__all__ = ["NEVER", "Drawdown", "Grant", "Instance", "Scope", "Spend", "boundaries", "draw_down", "to_pico"]
