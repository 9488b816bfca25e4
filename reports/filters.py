"""What a reader narrows a report to: departments, teams, models, providers, tags.

Pages of the dashboard pass one `Filters` to every report they show, so a viewer limited to
one department is limited inside the reports (`Filters.within`), not by hiding widgets.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

UNSEEN = "\x00none"  # a department no row has: what a viewer asking for another one gets


@dataclass(frozen=True)
class Filters:
    """Each field: the values to keep (empty: all). `tags`: `k=v` pairs a call must carry."""

    departments: tuple[str, ...] = ()
    teams: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    providers: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()

    def where(self) -> dict[str, Any]:
        """Rollup/event column -> values, for `rollup_sums(where=...)`."""
        out: dict[str, Any] = {}
        for column, values in (
            ("department", self.departments),
            ("team", self.teams),
            ("model", self.models),
            ("provider", self.providers),
        ):
            if values:
                out[column] = list(values)
        return out

    def within(self, department: str | None) -> Filters:
        """These filters for a viewer who may see only `department` (None: every department)."""
        if department is None:
            return self
        keep = tuple(d for d in self.departments if d == department) if self.departments else (department,)
        return replace(self, departments=keep or (UNSEEN,))

    @property
    def department(self) -> str | None:
        """The one department these filters keep, if exactly one."""
        return self.departments[0] if len(self.departments) == 1 else None

    @property
    def narrowed(self) -> bool:
        return any((self.teams, self.models, self.providers, self.tags))


ALL = Filters()

__all__ = ["ALL", "Filters", "UNSEEN"]
