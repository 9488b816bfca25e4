"""The answers of /admin/runs, as /openapi.json documents them: the same fields as
`meterline report runs --json` (reports/agents.py's `Run.as_dict`)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class RunModelCost(BaseModel):
    provider: str
    model: str
    calls: int
    cost_usd: str


class RunToolCost(BaseModel):
    server: str
    tool: str
    calls: int
    errors: int
    subcalls: int = Field(description="calls made on behalf of this tool's calls, at any depth")
    own_usd: str = Field(description="the tool calls' own cost")
    subcall_usd: str
    total_usd: str


class RunCharged(BaseModel):
    department: str
    team: str
    calls: int
    cost_usd: str


class RunCall(BaseModel):
    call_id: str
    ts: str
    kind: str
    method: str
    provider: str
    model: str
    tool: str
    status: str
    link: str = Field(description="how it joined the run: traceparent, header, continuation, tool_request; empty for a root")
    department: str
    team: str = Field(description="charged")
    key_team: str = Field(description="the key's own")
    cost_usd: str = Field(description="its own")
    total_usd: str = Field(description="with every call made on its behalf")
    children: list[RunCall]


class RunOut(BaseModel):
    trace_id: str
    calls: int
    tool_calls: int
    llm_calls: int
    depth: int = Field(description="levels of calls below the agent (1: no sub-calls)")
    fan_out: int = Field(description="the most calls one caller made, the agent included")
    cost_usd: str = Field(description="every call of the run: the sum of by_model, by_tool's own_usd and other_usd")
    department: str = Field(description="the payer's: the run's root caller")
    team: str = Field(description="the payer: the team charged for the run's first call")
    teams: list[str] = Field(description="every key team that took part")
    started: str
    last: str = Field(description="when its last call started")
    duration_ms: int = Field(description="from its first call's start to the end of the call that finished last")
    links: dict[str, int] = Field(description="calls per link: root (no parent), traceparent, header, continuation, tool_request")
    by_model: list[RunModelCost]
    by_tool: list[RunToolCost]
    other_usd: str = Field(description="MCP requests other than tools/call")
    charged: list[RunCharged] = Field(description="the cost by team charged, per chargeback.subcalls")
    tree: list[RunCall] | None = Field(None, description="the call tree (one run only)")


class RunList(BaseModel):
    month: str
    runs: list[RunOut]


class CappedRunOut(BaseModel):
    trace_id: str
    team: str = Field(description="charged for the run")
    department: str
    capped_at: str = Field(description="when the first call past a cap was refused (ISO 8601)")
    why: str = Field(description="the cap it reached")
    calls: int = Field(description="calls admitted before the cap")
    refused: int = Field(description="calls of the run refused since")
    cost_usd: str = Field(description="what the run had spent (decimal string)")


class CappedRunList(BaseModel):
    month: str
    runs: list[CappedRunOut]
