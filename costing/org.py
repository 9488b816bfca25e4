"""The organisation: departments, their teams and cost centers, from the config."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from .config import Settings
from .errors import ConfigError


@dataclass(frozen=True, slots=True)
class Team:
    id: str
    name: str
    department: str
    department_name: str
    cost_center: str
    budget_usd_monthly: Decimal | None


class Org:
    def __init__(self, settings: Settings):
        self.departments = {d.id: d for d in settings.departments}
        self.teams: dict[str, Team] = {}
        for d in settings.departments:
            for t in d.teams:
                self.teams[t.id] = Team(
                    id=t.id,
                    name=t.name or t.id,
                    department=d.id,
                    department_name=d.name or d.id,
                    cost_center=d.cost_center,
                    budget_usd_monthly=t.budget_usd_monthly,
                )

    def team(self, team_id: str) -> Team:
        try:
            return self.teams[team_id]
        except KeyError:
            known = ", ".join(sorted(self.teams)) or "none configured"
            raise ConfigError(f"unknown team {team_id!r} (teams: {known})", key="departments") from None

    def cost_center(self, department: str) -> str:
        d = self.departments.get(department)
        return d.cost_center if d else ""
