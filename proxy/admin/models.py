"""The admin API's request and response bodies, as /openapi.json documents them.

Requests forbid fields they do not name (a typo is a 400, not a silently ignored setting).
Money is a decimal string in answers; in requests a string or a JSON number (send strings
for amounts a float cannot hold exactly).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from fastapi import Query
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from meterline.costing.months import MONTH_PATTERN

MAX_BUDGET = Decimal(1_000_000)  # USD a month per key: stored as BigInteger pico-dollars (9.2M max)
MAX_GRACE = 30 * 86400.0

Month = Annotated[str, Query(pattern=MONTH_PATTERN, description="billing month, YYYY-MM")]
Label = Annotated[str, StringConstraints(max_length=256)]
ModelName = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=r"^[^,]*$")]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RateLimitsIn(_Request):
    """A key's own rate limits (costing/rate_limits.py); a limit left out is not set."""

    requests_per_minute: int | None = Field(None, ge=0, description="requests in any minute")
    requests_per_hour: int | None = Field(None, ge=0)
    tokens_per_minute: int | None = Field(None, ge=0, description="input + output tokens, reserved at admission from max_tokens and the request's size")
    tokens_per_hour: int | None = Field(None, ge=0)
    usd_per_minute: Decimal | None = Field(None, ge=0, le=MAX_BUDGET, decimal_places=12, description="cost, reserved at admission as budgets reserve it")
    usd_per_hour: Decimal | None = Field(None, ge=0, le=MAX_BUDGET, decimal_places=12)


class RateLimitsOut(BaseModel):
    requests_per_minute: int | None = None
    requests_per_hour: int | None = None
    tokens_per_minute: int | None = None
    tokens_per_hour: int | None = None
    usd_per_minute: str | None = None
    usd_per_hour: str | None = None


class KeyCreate(_Request):
    team: Annotated[str, StringConstraints(min_length=1, max_length=128)] = Field(description="the configured team the key's spend is charged to")
    name: Label = Field("", description="a label")
    project: Label = Field("", description="default project for its calls")
    models: list[ModelName] = Field(default_factory=list, max_length=100, description="names or globs it may use; empty: every configured model")
    budget_usd_monthly: Decimal | None = Field(None, ge=0, le=MAX_BUDGET, decimal_places=12, description="the key's own monthly budget, USD")
    expires_at: AwareDatetime | None = Field(None, description="refused from then on (ISO 8601 with a zone, in the future)")
    limits: RateLimitsIn | None = Field(None, description="the key's own rate limits (429 rate_limit_exceeded past one)")


class KeyUpdate(_Request):
    limits: RateLimitsIn | None = Field(description="the key's rate limits from now on, replacing its old ones; null or {}: none of its own")


class KeyRotate(_Request):
    grace_seconds: float | None = Field(
        None, ge=0, le=MAX_GRACE, description="how long the replaced secret keeps working (default: server.key_rotation_grace_seconds)"
    )


class KeyPublic(BaseModel):
    id: str
    prefix: str = Field(description="the first characters of the secret, never enough to use it")
    name: str
    team: str
    department: str
    project: str
    models: list[str]
    budget_usd_monthly: str | None
    limits: RateLimitsOut = Field(description="its own rate limits (`limits:` in the config may set more)")
    created_at: str
    expires_at: str | None
    revoked_at: str | None
    previous_key_valid_until: str | None = Field(description="a rotation's grace: until when the replaced secret works")
    status: Literal["active", "expired", "revoked"]
    revoked: bool


class KeyIssued(KeyPublic):
    key: str = Field(description="the secret: shown in this answer only, never stored")


class KeyDetail(KeyPublic):
    month: str
    spend_usd: str = Field(description="what the key spent in `month` (the current one)")


class KeyList(BaseModel):
    object: Literal["list"] = "list"
    data: list[KeyPublic]
    first_id: str | None
    last_id: str | None
    has_more: bool


class LimitUse(BaseModel):
    scope: Literal["department", "team", "key"]
    id: str
    metric: Literal["requests_per_minute", "requests_per_hour", "tokens_per_minute", "tokens_per_hour", "usd_per_minute", "usd_per_hour"]
    limit: str
    used: str = Field(description="the sliding window's count: the fleet's, as the answering replica saw it at its last renewal, with its own calls up to now")
    remaining: str
    used_percent: str
    reset_seconds: float = Field(description="until the window is back to its full limit")
    lease: str | None = Field(description="what the answering replica may count in the current window")


class LimitsOut(BaseModel):
    limits: list[LimitUse]


class Anomaly(BaseModel):
    scope: Literal["team", "key"]
    id: str
    start: str = Field(description="its first hour, UTC")
    hours: int
    spend_usd: str = Field(description="in its first hour")
    peak_usd: str
    total_usd: str
    usual_usd: str = Field(description="the median of the same hour on the last 14 days")
    z: str = Field(description="the first hour's robust z-score")
    message: str
    open: bool = Field(description="it goes on into the current or the last full hour")


class AnomaliesOut(BaseModel):
    hours: int
    anomalies: list[Anomaly]


class UsageRow(BaseModel):
    day: str | None = None
    department: str | None = None
    team: str | None = None
    project: str | None = None
    model: str | None = None
    key_id: str | None = None
    requests: int
    input_tokens: int
    cached_input_tokens: int
    output_tokens: int
    reasoning_tokens: int
    cost_usd: str


class UsageOut(BaseModel):
    month: str
    group_by: list[str]
    rows: list[UsageRow]
    total_usd: str
    requests: int


class BudgetOut(BaseModel):
    scope: Literal["department", "team", "key"]
    id: str
    name: str
    department: str
    limit_usd: str
    spent_usd: str = Field(description="in the ledger for the month")
    reserved_usd: str = Field(description="held by calls in flight on the replica that answers")
    remaining_usd: str
    forecast_usd: str | None = Field(description="month-end at the run rate so far; the current month only")
    used_percent: str
    state: Literal["over", "near", "forecast_over", "ok"]


class BudgetsOut(BaseModel):
    month: str
    budgets: list[BudgetOut]


class PeriodClosedOut(BaseModel):
    period: str
    closed_at: str
    lines: int
    total: str
    currency: str


class HolderBudget(BaseModel):
    scope: Literal["department", "team", "key"]
    id: str
    limit_usd: str
    spent_usd: str
    remaining_usd: str


class HolderUsage(BaseModel):
    key_id: str
    team: str
    department: str
    month: str
    spend_usd: str
    budgets: list[HolderBudget]
    expires_at: str | None
