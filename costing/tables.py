"""The ledger's tables: one row per metered call, hourly rollups, keys, closed months, notes
and budget leases.

Money is stored as integer pico-dollars (`cost_pico`, see money.py): exact on SQLite and
PostgreSQL alike. Every table here is registered on `SQLModel.metadata`, which the Alembic
revisions in costing/migrations/ must match (tests/costing/test_migrate.py): a change here
needs a revision, `python -m meterline.costing.migrate 'what changed'`.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

EVENT_COLUMNS = (
    "call_id ts kind status department team project user key_id provider model tool "
    "input_tokens cached_input_tokens output_tokens reasoning_tokens cost_usd usage_source "
    "trace_id parent_call_id link"
).split()
"""The contract's events export columns, in order (`cost_usd` is derived from `cost_pico`)."""

TOKEN_FIELDS = (
    "input_tokens",
    "cached_input_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cache_write_tokens",
)
DIMENSION_FIELDS = (
    "cache_write_1h_tokens",
    "input_audio_tokens",
    "output_audio_tokens",
    "input_image_tokens",
    "output_image_tokens",
    "web_search_calls",
    "file_search_calls",
    "code_interpreter_calls",
)
"""The counts of the other billed dimensions, on events (not in rollups)."""
BILLING_COLUMNS = (*DIMENSION_FIELDS, "service_tier", "long_context_above", "usage_flag", "cost_detail")
"""What the events export adds after the contract's columns: the counts and how the call was billed."""

DETAILED = "cost_detail != '' OR usage_flag != ''"
"""Events whose cost is broken down by dimension or whose usage is flagged (a partial index)."""

# Columns added after the first release have server defaults: an event spooled by an older
# version (replayed by `meterline db recover`) lacks them.
_ZERO = {"server_default": "0"}
_EMPTY = {"server_default": ""}


def utcnow() -> datetime:
    return datetime.now(UTC)


class Event(SQLModel, table=True):
    __tablename__ = "events"
    __table_args__ = (
        sa.Index("ix_events_period", "charge_period", "department", "team"),
        sa.Index("ix_events_ts", "ts"),
        sa.Index("ix_events_trace", "trace_id"),
        sa.Index("ix_events_parent_span", "parent_span_id"),
        # The few calls billed along more than text, or flagged: reports break their cost down.
        sa.Index("ix_events_detailed", "charge_period", postgresql_where=sa.text(DETAILED), sqlite_where=sa.text(DETAILED)),
    )

    call_id: str = Field(primary_key=True, max_length=32)
    ts: datetime  # UTC
    charge_period: str = Field(max_length=7)  # YYYY-MM it is billed in (late events: next open)
    adjustment: bool = False  # billed in a later month than it happened, its own was closed
    kind: str = Field(max_length=16)  # llm | embedding | mcp
    status: str = Field(max_length=16)  # ok | upstream_error | client_closed | rejected | tool_error | protocol_error
    department: str = Field("", max_length=128)  # who is charged
    team: str = Field("", max_length=128)
    cost_center: str = Field("", max_length=128)
    key_team: str = Field("", max_length=128)  # the key's own team
    project: str = Field("", max_length=256)
    user: str = Field("", max_length=256)
    key_id: str = Field("", max_length=64)
    provider: str = Field("", max_length=128)
    model: str = Field("", max_length=256)
    tool: str = Field("", max_length=256)
    method: str = Field("", max_length=128)  # MCP method, or the LLM route
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    cache_write_tokens: int = 0
    # Every other dimension a call is billed by (costing/money.py's Usage), and how it was billed.
    cache_write_1h_tokens: int = Field(0, sa_column_kwargs=_ZERO)
    input_audio_tokens: int = Field(0, sa_column_kwargs=_ZERO)
    output_audio_tokens: int = Field(0, sa_column_kwargs=_ZERO)
    input_image_tokens: int = Field(0, sa_column_kwargs=_ZERO)
    output_image_tokens: int = Field(0, sa_column_kwargs=_ZERO)
    web_search_calls: int = Field(0, sa_column_kwargs=_ZERO)
    file_search_calls: int = Field(0, sa_column_kwargs=_ZERO)
    code_interpreter_calls: int = Field(0, sa_column_kwargs=_ZERO)
    service_tier: str = Field("", max_length=16, sa_column_kwargs=_EMPTY)  # the tier billed: default, priority, flex ("" for MCP)
    long_context_above: int = Field(0, sa_column_kwargs=_ZERO)  # the context threshold the prompt passed (0: none): the whole call at its rates
    cost_detail: str = Field("", max_length=512, sa_column_kwargs=_EMPTY)  # cost by dimension, "dim=pico;..." ("" for a text-only call)
    usage_flag: str = Field("", max_length=32, sa_column_kwargs=_EMPTY)  # invalid_usage, partly_priced (comma-separated) or ""
    cost_pico: int = Field(0, sa_type=sa.BigInteger)
    priced: bool = True
    price_version: str = Field("", max_length=256)
    usage_source: str = Field("reported", max_length=16)
    trace_id: str = Field("", max_length=32)
    parent_span_id: str = Field("", max_length=16)
    parent_call_id: str = Field("", max_length=32)
    link: str = Field("", max_length=16, sa_column_kwargs=_EMPTY)  # how it joined its run: traceparent, header, continuation, tool_request
    tags: str = Field("", max_length=1024)  # k=v,k2=v2 as sent
    http_status: int = 0
    latency_ms: int = 0
    request_bytes: int = Field(0, sa_type=sa.BigInteger)
    response_bytes: int = Field(0, sa_type=sa.BigInteger)
    error: str = Field("", max_length=512)


ROLLUP_DIMS = (
    "hour charge_period adjustment department team cost_center key_team project user kind "
    "provider model tool status usage_source priced tags"
).split()
ROLLUP_SUMS = ("requests", *TOKEN_FIELDS, "tool_calls", "cost_pico")


class Rollup(SQLModel, table=True):
    """Hourly sums per who, what and how; reports read these, not raw events."""

    __tablename__ = "rollups_hourly"
    __table_args__ = (
        sa.UniqueConstraint(*ROLLUP_DIMS, name="uq_rollups_dims"),
        sa.Index("ix_rollups_period", "charge_period"),
    )

    id: int | None = Field(default=None, primary_key=True)
    hour: datetime
    charge_period: str = Field(max_length=7)
    adjustment: bool = False
    department: str = ""
    team: str = ""
    cost_center: str = ""
    key_team: str = ""
    project: str = ""
    user: str = ""
    kind: str = ""
    provider: str = ""
    model: str = ""
    tool: str = ""
    status: str = ""
    usage_source: str = ""
    priced: bool = True
    tags: str = ""  # as sent (k=v,...): chargeback lines and FOCUS Tags are split by them
    requests: int = Field(0, sa_type=sa.BigInteger)
    input_tokens: int = Field(0, sa_type=sa.BigInteger)
    cached_input_tokens: int = Field(0, sa_type=sa.BigInteger)
    output_tokens: int = Field(0, sa_type=sa.BigInteger)
    reasoning_tokens: int = Field(0, sa_type=sa.BigInteger)
    cache_write_tokens: int = Field(0, sa_type=sa.BigInteger)
    tool_calls: int = Field(0, sa_type=sa.BigInteger)
    cost_pico: int = Field(0, sa_type=sa.BigInteger)


class VirtualKey(SQLModel, table=True):
    __tablename__ = "keys"

    id: str = Field(primary_key=True, max_length=32)
    prefix: str = Field(max_length=16)  # shown in listings; never enough to use the key
    key_hash: str = Field(max_length=64, unique=True)  # sha256 of the secret
    name: str = ""
    team: str = Field(max_length=128)
    project: str = ""
    models: str = ""  # comma-separated names or globs this key may use; empty = all
    created_at: datetime = Field(default_factory=utcnow)
    revoked_at: datetime | None = None
    updated_at: datetime = Field(default_factory=utcnow, index=True)
    expires_at: datetime | None = None  # refused from then on (401, the message says so)
    budget_pico: int | None = Field(None, sa_type=sa.BigInteger)  # monthly budget of its own
    # Rotation: the secret it replaced, accepted until `previous_valid_until` (the grace).
    previous_hash: str | None = Field(default=None, max_length=64, index=True)
    previous_valid_until: datetime | None = None
    # Rate limits of its own, JSON `{"requests_per_minute": 60, "usd_per_hour": "2"}` (costing/rate_limits.py).
    limits: str | None = Field(default=None, sa_type=sa.Text)


class PeriodSnapshot(SQLModel, table=True):
    """A closed month: the chargeback as it was billed, kept verbatim."""

    __tablename__ = "periods"

    period: str = Field(primary_key=True, max_length=7)
    closed_at: datetime = Field(default_factory=utcnow)
    snapshot: str = Field(sa_type=sa.Text)  # JSON lines of the chargeback, exact decimals


class Note(SQLModel, table=True):
    """Things the ledger should remember besides calls: budget alerts, price warnings."""

    __tablename__ = "notes"
    __table_args__ = (sa.UniqueConstraint("kind", "subject", "period", name="uq_notes_once"),)

    id: int | None = Field(default=None, primary_key=True)
    ts: datetime = Field(default_factory=utcnow)
    kind: str = Field(max_length=32)  # budget_soft | budget_hard | unpriced_model
    subject: str = Field(max_length=256)
    period: str = Field(max_length=7)
    message: str = ""


class BudgetLease(SQLModel, table=True):
    """How much of a budget one proxy replica may spend beyond the ledger (costing/budget_leases.py)."""

    __tablename__ = "budget_leases"

    scope: str = Field(primary_key=True, max_length=200)  # "team:nlp", "department:research", "key:key_..."
    period: str = Field(primary_key=True, max_length=7)
    replica: str = Field(primary_key=True, max_length=32)
    committed_pico: int = Field(0, sa_type=sa.BigInteger)  # its unlanded spend may not pass this
    heartbeat_at: datetime = Field(default_factory=utcnow)  # renewed every budgets.refresh_seconds


class CreditGrant(SQLModel, table=True):
    """A credit grant made through the admin API (`credits:` in the config are the others)."""

    __tablename__ = "credit_grants"

    id: str = Field(primary_key=True, max_length=64)
    department: str = Field("", max_length=128)  # one of department and team is set
    team: str = Field("", max_length=128)
    amount_pico: int = Field(sa_type=sa.BigInteger)
    effective_from: datetime
    expires_at: datetime | None = None
    priority: int = 0
    recurring: str = Field("", max_length=16)  # "" or "monthly"
    rollover_max_pico: int | None = Field(None, sa_type=sa.BigInteger)
    created_at: datetime = Field(default_factory=utcnow)
    revoked_at: datetime | None = None  # stops counting at this instant


class RateLease(SQLModel, table=True):
    """One replica's count and lease in one window of one rate limit (costing/rate_leases.py)."""

    __tablename__ = "rate_leases"

    scope: str = Field(primary_key=True, max_length=200)  # "team:nlp", "key:key_..."
    metric: str = Field(primary_key=True, max_length=32)  # "tokens_per_minute", ...
    bucket: int = Field(primary_key=True, sa_type=sa.BigInteger)  # epoch seconds // window length
    replica: str = Field(primary_key=True, max_length=32)
    used: int = Field(0, sa_type=sa.BigInteger)  # what it admitted (requests, tokens, pico-USD)
    committed: int = Field(0, sa_type=sa.BigInteger)  # what it may reach: used + its share
    heartbeat_at: datetime = Field(default_factory=utcnow)


class RunClue(SQLModel, table=True):
    """Something an LLM response produced that a later call may carry back (costing/run_links.py):
    kept so that a call served by another replica or worker can still be linked to its run."""

    __tablename__ = "run_clues"
    __table_args__ = (sa.Index("ix_run_clues_clue", "team", "clue"), sa.Index("ix_run_clues_trace", "trace_id"))

    id: int | None = Field(default=None, primary_key=True)
    team: str = Field(max_length=128)  # the producing key's team: links never cross teams
    clue: str = Field(max_length=80)
    tool: str = Field("", max_length=256)  # for an arguments clue, the tool asked for
    call_id: str = Field(max_length=32)
    trace_id: str = Field(max_length=32)
    ts: datetime = Field(index=True)


class RunWait(SQLModel, table=True):
    """A call whose clues named no call this ledger knew yet: linked when the producer lands."""

    __tablename__ = "run_waits"
    __table_args__ = (sa.Index("ix_run_waits_clue", "team", "clue"),)

    call_id: str = Field(primary_key=True, max_length=32)
    clue: str = Field(primary_key=True, max_length=80)
    team: str = Field(max_length=128)
    tool: str = Field("", max_length=256)  # for an MCP tools/call: the tool it ran
    kind: str = Field(max_length=16)  # continuation | tool_request
    ts: datetime = Field(index=True)


class TraceMove(SQLModel, table=True):
    """A run that was found to continue another: its calls moved from `old_trace` to `new_trace`.
    Kept so that calls of the old trace landing later (from another replica) follow."""

    __tablename__ = "trace_moves"

    old_trace: str = Field(primary_key=True, max_length=32)
    new_trace: str = Field(max_length=32, index=True)
    ts: datetime = Field(default_factory=utcnow, index=True)


def _table(model: type[SQLModel]) -> sa.Table:
    """The SQLAlchemy table SQLModel made for `model` (its `__table__`, which SQLModel leaves untyped)."""
    table = model.__table__  # type: ignore[attr-defined]
    assert isinstance(table, sa.Table)
    return table


# The tables as SQLAlchemy Core sees them, for the statements the models do not write.
EVENTS = _table(Event)
ROLLUPS = _table(Rollup)
KEYS = _table(VirtualKey)
PERIODS = _table(PeriodSnapshot)
NOTES = _table(Note)
LEASES = _table(BudgetLease)
GRANTS = _table(CreditGrant)
RATE_LEASES = _table(RateLease)
RUN_CLUES = _table(RunClue)
RUN_WAITS = _table(RunWait)
TRACE_MOVES = _table(TraceMove)

__all__ = [
    "EVENTS",
    "GRANTS",
    "KEYS",
    "LEASES",
    "NOTES",
    "PERIODS",
    "RATE_LEASES",
    "ROLLUPS",
    "RUN_CLUES",
    "RUN_WAITS",
    "TRACE_MOVES",
    "EVENT_COLUMNS",
    "ROLLUP_DIMS",
    "ROLLUP_SUMS",
    "TOKEN_FIELDS",
    "BudgetLease",
    "CreditGrant",
    "Event",
    "Note",
    "PeriodSnapshot",
    "RateLease",
    "Rollup",
    "RunClue",
    "RunWait",
    "TraceMove",
    "VirtualKey",
    "utcnow",
]
