"""The credit routes' request and response bodies, as /openapi.json documents them."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

MAX_GRANT = Decimal(1_000_000)  # USD per grant (and per month of a recurring grant)
Ident = Annotated[str, StringConstraints(min_length=1, max_length=128)]


class CreditCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")] | None = Field(
        None, description="the grant's id (default: made up, `grant_...`)"
    )
    team: Ident | None = Field(None, description="the team it is granted to (or `department`)")
    department: Ident | None = Field(None, description="the department it is granted to (or `team`)")
    amount_usd: Decimal = Field(ge=0, le=MAX_GRANT, decimal_places=12, description="USD granted (each month, if recurring)")
    effective_from: AwareDatetime | None = Field(None, description="counts from this instant (default: now)")
    expires: AwareDatetime | None = Field(None, description="stops counting at this instant")
    priority: int = Field(0, ge=-1_000_000, le=1_000_000, description="lower is drawn first; then the earliest to expire")
    recurring: Literal["monthly"] | None = Field(None, description="granted again each month")
    rollover_max_usd: Decimal | None = Field(None, ge=0, le=MAX_GRANT, decimal_places=12, description="what may carry over to the next month, with recurring")


class CreditOut(BaseModel):
    id: str
    source: Literal["config", "api"]
    team: str | None
    department: str
    amount_usd: str
    effective_from: str
    expires: str | None
    priority: int
    recurring: Literal["monthly"] | None
    rollover_max_usd: str | None
    revoked_at: str | None
    status: Literal["scheduled", "active", "expired", "revoked"]
    granted_usd: str = Field(description="the amounts granted so far (each month of a recurring grant; rollovers are not new credit)")
    drawn_usd: str = Field(description="drawn by calls in the ledger, all months")
    balance_usd: str = Field(description="left to draw now (0 unless it counts now)")


class CreditList(BaseModel):
    object: Literal["list"] = "list"
    data: list[CreditOut]
    balance_usd: str = Field(description="the listed grants' balances added up")


class CreditDay(BaseModel):
    day: str
    department: str
    team: str
    drawn_usd: str


class CreditInstance(BaseModel):
    period: str | None = Field(description="the month of a recurring grant's instance")
    start: str
    end: str | None
    granted_usd: str
    carried_usd: str = Field(description="rolled over from the month before")
    drawn_usd: str
    remaining_usd: str


class CreditDetail(CreditOut):
    instances: list[CreditInstance]
    days: list[CreditDay] = Field(description="what was drawn per day (UTC) and team")
