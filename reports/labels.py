"""What the dashboard calls things: department and team names, and how a month is labelled.

Reports keep ids (they are what the ledger and the exports hold); pages show names, with the
id where it helps, and list names in name order. A month is labelled by where it stands: the
open month is "so far", a month that has ended is whole ("Billed", "Month total").
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from meterline.costing import Org, has_ended, month_start, next_period, period_of

from .trend import OPEN_MIN_HOURS, elapsed

NONE_LABEL = "(unattributed)"


@dataclass(frozen=True)
class Names:
    departments: dict[str, str]  # id -> name
    teams: dict[str, tuple[str, str]]  # id -> (name, department id)

    @classmethod
    def of(cls, org: Org) -> Names:
        return cls(
            {d.id: d.name or d.id for d in org.departments.values()},
            {t.id: (t.name, t.department) for t in org.teams.values()},
        )

    def department(self, dept: str | None) -> str:
        if not dept:
            return NONE_LABEL
        return self.departments.get(dept, dept)

    def team(self, team: str | None) -> str:
        if not team:
            return "(no team)"
        return self.teams.get(team, (team, ""))[0]

    def team_department(self, team: str) -> str:
        return self.teams.get(team, ("", ""))[1]

    def team_label(self, team: str, department: str | None = None) -> str:
        """ "Helpdesk (Customer Support)": a team is read with its department."""
        dept = department if department is not None else self.team_department(team)
        return f"{self.team(team)} ({self.department(dept)})" if dept else self.team(team)

    def sorted_departments(self, ids: Iterable[str]) -> list[str]:
        return sorted(ids, key=lambda d: (self.department(d).casefold(), d))

    def sorted_teams(self, ids: Iterable[str]) -> list[str]:
        return sorted(ids, key=lambda t: (self.team(t).casefold(), t))

    def with_id(self, name: str, ident: str) -> str:
        """ "Customer Support · support" when the name is not the id itself."""
        return name if not ident or name == ident else f"{name} · {ident}"


@dataclass(frozen=True)
class Month:
    """A billing month as the pages label it, seen at `now`."""

    period: str
    now: datetime

    @property
    def is_open(self) -> bool:
        """`now` is in this month: its figures are still growing."""
        return period_of(self.now) == self.period

    @property
    def ended(self) -> bool:
        return has_ended(self.period, self.now)

    @property
    def total_label(self) -> str:
        return "Month to date" if self.is_open else ("Month total" if self.ended else "Month")

    @property
    def billed_label(self) -> str:
        return "Billed so far" if self.is_open else "Billed"

    @property
    def closable_from(self) -> str:
        """The first day the month may be closed, as YYYY-MM-DD."""
        return f"{next_period(self.period)}-01"

    @property
    def so_far(self) -> str:
        """ "9 hours" / "19 days" of the open month; "" for another month."""
        gone = elapsed(self.period, self.now)
        return "" if gone is None else span(gone)


def span(t: timedelta) -> str:
    hours = int(t.total_seconds() // 3600)
    if hours < 1:
        minutes = int(t.total_seconds() // 60)
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    if hours < 48:
        return f"{hours} hour{'s' if hours != 1 else ''}"
    return f"{t.days} days"


def default_month(with_usage: Iterable[str], now: datetime | None = None) -> tuple[str, str]:
    """The month the dashboard opens on, and why when it is not the current one.

    The current month once it has `OPEN_MIN_HOURS` of data; before that the newest earlier
    month with usage (on the 1st, last month's whole picture rather than a few hours)."""
    now = now or datetime.now(UTC)
    current = period_of(now)
    earlier = sorted((p for p in with_usage if p < current), reverse=True)
    gone = now - month_start(current)
    if gone >= timedelta(hours=OPEN_MIN_HOURS) or not earlier:
        return current, ""
    why = (
        f"Showing {earlier[0]}, the latest month with a full day of data: {current} began "
        f"{span(gone)} ago. Pick it under Month to see it so far."
    )
    return earlier[0], why


__all__ = ["NONE_LABEL", "Month", "Names", "default_month", "span"]
