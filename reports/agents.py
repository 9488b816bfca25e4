"""What tools, tool calls and agent runs cost, sub-calls included: call trees from the ledger.

A call's children are the calls whose `parent_call_id` is its id (an LLM call a tool server
made while serving a tool call, a nested tool call, a sampling request). An agent run is a
trace (`trace_id`) of more than one call. Trees are built from raw events of one billing
month, one trace at a time, so memory follows the largest trace, not the month; the top-N
runs are chosen by summing per trace in SQL first.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from meterline.costing import ZERO, exact, from_pico, usd

from .ledger_queries import EVENTS, rollup_sums

_COLUMNS = (
    "call_id", "parent_call_id", "trace_id", "ts", "kind", "method", "provider", "model", "tool",
    "status", "department", "team", "key_team", "cost_pico", "link", "latency_ms",
)  # fmt: skip
LINKS = ("root", "traceparent", "header", "continuation", "tool_request")
"""How a run's calls joined it (the events' `link`), in this order; `root` is the empty link."""


@dataclass
class CallNode:
    """One call and the calls made on its behalf. `cost_usd` is its own cost."""

    call_id: str
    trace_id: str
    ts: datetime
    kind: str
    method: str
    provider: str
    model: str
    tool: str
    status: str
    team: str  # charged
    key_team: str  # the key's own
    cost_usd: Decimal
    children: list[CallNode] = field(default_factory=list)
    department: str = ""  # charged
    link: str = ""  # how it joined its run: traceparent, header, continuation, tool_request, "" (a root)
    latency_ms: int = 0
    parent_call_id: str = ""

    @property
    def how_linked(self) -> str:
        """Its `link`, `root` for a call with no parent. A parent with no link was found by
        traceparent: the only way calls were linked before the ledger said how."""
        return self.link or ("traceparent" if self.parent_call_id else "root")

    @property
    def what(self) -> str:
        """What was called: `server/tool` for a tool call, else the model (or the MCP method)."""
        return f"{self.provider}/{self.tool}" if self.is_tool_call else (self.model or self.method)

    @property
    def ends(self) -> datetime:
        return self.ts + timedelta(milliseconds=self.latency_ms)

    @property
    def is_tool_call(self) -> bool:
        return self.kind == "mcp" and self.method == "tools/call"

    @property
    def total_usd(self) -> Decimal:
        return self.cost_usd + self.subcall_usd

    @property
    def subcall_usd(self) -> Decimal:
        return sum((c.total_usd for c in self.children), ZERO)

    def walk(self) -> Iterator[CallNode]:
        yield self
        for c in self.children:
            yield from c.walk()

    def as_dict(self) -> dict[str, Any]:
        return {
            "call_id": self.call_id,
            "ts": self.ts.isoformat(),
            "kind": self.kind,
            "method": self.method,
            "provider": self.provider,
            "model": self.model,
            "tool": self.tool,
            "status": self.status,
            "link": self.link,
            "department": self.department,
            "team": self.team,
            "key_team": self.key_team,
            "cost_usd": exact(self.cost_usd),
            "total_usd": exact(self.total_usd),
            "children": [c.as_dict() for c in self.children],
        }


@dataclass
class ToolCost:
    """A tool's month: its calls' own cost and the cost of everything they caused."""

    server: str
    tool: str
    calls: int = 0
    errors: int = 0  # tool_error, protocol_error, upstream_error
    subcalls: int = 0
    own_usd: Decimal = ZERO
    subcall_usd: Decimal = ZERO

    @property
    def total_usd(self) -> Decimal:
        return self.own_usd + self.subcall_usd

    def as_dict(self) -> dict[str, Any]:
        return {
            "server": self.server,
            "tool": self.tool,
            "calls": self.calls,
            "errors": self.errors,
            "subcalls": self.subcalls,
            "own_usd": exact(self.own_usd),
            "subcall_usd": exact(self.subcall_usd),
            "total_usd": exact(self.total_usd),
        }


@dataclass
class ModelCost:
    """What a run's calls of one model cost (LLM and embedding calls)."""

    provider: str
    model: str
    calls: int = 0
    cost_usd: Decimal = ZERO

    def as_dict(self) -> dict[str, Any]:
        return {"provider": self.provider, "model": self.model, "calls": self.calls, "cost_usd": exact(self.cost_usd)}


@dataclass
class Charged:
    """What one team is charged of a run (`chargeback.subcalls`: the root caller's team pays
    for the whole tree, or each key's team for its own calls)."""

    department: str
    team: str
    calls: int = 0
    cost_usd: Decimal = ZERO

    def as_dict(self) -> dict[str, Any]:
        return {"department": self.department, "team": self.team, "calls": self.calls, "cost_usd": exact(self.cost_usd)}


@dataclass
class Run:
    """An agent run (one trace). The calls without a parent in the ledger hang off the agent
    itself: `depth` counts levels below it (1: no sub-calls), `fan_out` is the most children
    any one caller had, the agent included.

    Its cost parts add up to `cost_usd` exactly: `by_model` (LLM and embedding calls) plus the
    tool calls' own cost in `by_tool` plus `other_usd` (MCP requests besides tools/call);
    `charged` splits the same total by the team billed for each call."""

    trace_id: str
    calls: int
    tool_calls: int
    llm_calls: int
    depth: int
    fan_out: int
    cost_usd: Decimal
    team: str  # the payer: charged for the run's first call, its root caller
    teams: list[str]  # every key team that took part
    started: datetime
    last: datetime
    roots: list[CallNode]
    department: str = ""  # the payer's
    ended: datetime | None = None  # when its last call finished
    by_model: list[ModelCost] = field(default_factory=list)
    by_tool: list[ToolCost] = field(default_factory=list)
    other_usd: Decimal = ZERO
    charged: list[Charged] = field(default_factory=list)
    links: dict[str, int] = field(default_factory=dict)  # calls per CallNode.how_linked, in LINKS order

    @property
    def duration_ms(self) -> int:
        """From its first call's start to the end of the call that finished last."""
        return int(((self.ended or self.last) - self.started) / timedelta(milliseconds=1))

    def as_dict(self, tree: bool = True) -> dict[str, Any]:
        d: dict[str, Any] = {
            "trace_id": self.trace_id,
            "calls": self.calls,
            "tool_calls": self.tool_calls,
            "llm_calls": self.llm_calls,
            "depth": self.depth,
            "fan_out": self.fan_out,
            "cost_usd": exact(self.cost_usd),
            "department": self.department,
            "team": self.team,
            "teams": self.teams,
            "started": self.started.isoformat(),
            "last": self.last.isoformat(),
            "duration_ms": self.duration_ms,
            "links": self.links,
            "by_model": [m.as_dict() for m in self.by_model],
            "by_tool": [t.as_dict() for t in self.by_tool],
            "other_usd": exact(self.other_usd),
            "charged": [c.as_dict() for c in self.charged],
        }
        if tree:
            d["tree"] = [r.as_dict() for r in self.roots]
        return d


def _node(row: Any) -> CallNode:
    return CallNode(
        call_id=row.call_id,
        trace_id=row.trace_id,
        ts=row.ts,
        kind=row.kind,
        method=row.method,
        provider=row.provider,
        model=row.model,
        tool=row.tool,
        status=row.status,
        team=row.team,
        key_team=row.key_team,
        cost_usd=from_pico(row.cost_pico),
        department=row.department,
        link=row.link,
        latency_ms=row.latency_ms,
        parent_call_id=row.parent_call_id,
    )


def build_trees(rows: Iterable[Any]) -> list[CallNode]:
    """Link calls (rows with the event columns) into trees; returns the roots in time order."""
    nodes = {r.call_id: (_node(r), r.parent_call_id) for r in rows}
    roots = []
    for node, parent in sorted(nodes.values(), key=lambda np: (np[0].ts, np[0].call_id)):
        if parent and parent in nodes and parent != node.call_id:
            nodes[parent][0].children.append(node)
        else:
            roots.append(node)
    return roots


def _select(period: str, department: str | None = None) -> sa.Select[Any]:
    t = EVENTS
    q = sa.select(*(t.c[c] for c in _COLUMNS)).where(_in_month(t, period), t.c.trace_id != "")
    return q if department is None else q.where(t.c.department == department)


def _in_month(t: Any, period: str) -> Any:
    # The same test as `charge_period == period`, written so that SQLite finds the rows
    # through the trace or parent-span index instead of walking the whole month's.
    return sa.func.coalesce(t.c.charge_period, "") == period


def _linked_traces(period: str) -> sa.Select[Any]:
    """Traces of the month with a call that has a parent span, found through that index.
    Every trace of more than one call has one: a call without trace context starts its own."""
    t = EVENTS
    return sa.select(t.c.trace_id).where(t.c.parent_span_id > "", _in_month(t, period))


def _traces(engine: sa.Engine, q: sa.Select[Any]) -> Iterator[list[CallNode]]:
    """The trees of each trace `q` selects (ordered by trace), one trace at a time."""
    t = EVENTS
    q = q.order_by(t.c.trace_id, t.c.ts)
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=5000).execute(q)
        for _, rows in itertools.groupby(result, key=lambda r: r.trace_id):
            yield build_trees(rows)


def _is_tool_call(t: Any) -> Any:
    return sa.and_(t.c.kind == "mcp", t.c.method == "tools/call")


def tool_costs(engine: sa.Engine, period: str, department: str | None = None) -> list[ToolCost]:
    """Per MCP server and tool: calls, own cost, the cost of their sub-call trees, by total.
    `department`: only calls charged to it."""
    t = EVENTS
    out: dict[tuple[str, str], ToolCost] = {}
    # Calls, errors and own cost of every tool call from the hourly rollups (only tool calls
    # carry a tool name); sub-calls from the trees of the traces that have any.
    where = {"kind": "mcp", **({"department": department} if department is not None else {})}
    for r in rollup_sums(engine, period, ["provider", "tool", "status"], where):
        if r["tool"]:
            tc = out.setdefault((r["provider"], r["tool"]), ToolCost(r["provider"], r["tool"]))
            tc.calls += r["tool_calls"]
            tc.errors += r["tool_calls"] if r["status"] != "ok" else 0
            tc.own_usd += from_pico(r["cost_pico"])
    for roots in _traces(engine, _select(period, department).where(t.c.trace_id.in_(_linked_traces(period)))):
        for node in (n for r in roots for n in r.walk() if n.is_tool_call and n.children):
            tc = out.setdefault((node.provider, node.tool), ToolCost(node.provider, node.tool))
            tc.subcall_usd += node.subcall_usd
            tc.subcalls += sum(1 for _ in node.walk()) - 1
    return sorted(out.values(), key=lambda c: (-c.total_usd, c.server, c.tool))


def top_tool_calls(engine: sa.Engine, period: str, top: int = 20, tool: str | None = None) -> list[CallNode]:
    """The `top` tool calls of the month by total cost (own + sub-calls), each with its tree."""
    t = EVENTS
    calls = sa.select(t.c.trace_id).where(t.c.charge_period == period, _is_tool_call(t))
    if tool:
        calls = calls.where(t.c.tool == tool)
    best: list[CallNode] = []
    for roots in _traces(engine, _select(period).where(t.c.trace_id.in_(calls.distinct()))):
        best.extend(n for r in roots for n in r.walk() if n.is_tool_call and (not tool or n.tool == tool))
        best = sorted(best, key=lambda n: (-n.total_usd, n.call_id))[:top]
    return best


def call_tree(engine: sa.Engine, call_id: str) -> CallNode | None:
    """A call with everything made on its behalf (from its trace, any month)."""
    t = EVENTS
    with engine.connect() as conn:
        trace = conn.execute(sa.select(t.c.trace_id).where(t.c.call_id == call_id)).scalar()
        if trace is None:
            return None
        # A call with no trace (recorded before runs were traced) is a tree of its own.
        same = t.c.trace_id == trace if trace else t.c.call_id == call_id
        rows = conn.execute(sa.select(*(t.c[c] for c in _COLUMNS)).where(same)).all()
    for root in build_trees(rows):
        for node in root.walk():
            if node.call_id == call_id:
                return node
    return None


def _depth(node: CallNode) -> int:
    return 1 + max((_depth(c) for c in node.children), default=0)


def run_of(trace_id: str, roots: list[CallNode]) -> Run:
    nodes = [n for r in roots for n in r.walk()]
    models: dict[tuple[str, str], ModelCost] = {}
    tools: dict[tuple[str, str], ToolCost] = {}
    charged: dict[tuple[str, str], Charged] = {}
    links = dict.fromkeys(LINKS, 0)
    other = ZERO
    for n in nodes:
        if n.is_tool_call:
            tc = tools.setdefault((n.provider, n.tool), ToolCost(n.provider, n.tool))
            tc.calls += 1
            tc.errors += n.status != "ok"
            tc.own_usd += n.cost_usd
            tc.subcalls += sum(1 for _ in n.walk()) - 1
            tc.subcall_usd += n.subcall_usd
        elif n.kind == "mcp":
            other += n.cost_usd
        else:
            m = models.setdefault((n.provider, n.model), ModelCost(n.provider, n.model))
            m.calls += 1
            m.cost_usd += n.cost_usd
        c = charged.setdefault((n.department, n.team), Charged(n.department, n.team))
        c.calls += 1
        c.cost_usd += n.cost_usd
        links[n.how_linked] = links.get(n.how_linked, 0) + 1
    return Run(
        trace_id=trace_id,
        calls=len(nodes),
        tool_calls=sum(n.is_tool_call for n in nodes),
        llm_calls=sum(n.kind == "llm" for n in nodes),
        depth=max((_depth(r) for r in roots), default=0),
        fan_out=max([len(roots), *(len(n.children) for n in nodes)]),
        cost_usd=sum((n.cost_usd for n in nodes), ZERO),
        team=roots[0].team if roots else "",
        teams=sorted({n.key_team for n in nodes}),
        started=min(n.ts for n in nodes),
        last=max(n.ts for n in nodes),
        roots=roots,
        department=roots[0].department if roots else "",
        ended=max(n.ends for n in nodes),
        by_model=sorted(models.values(), key=lambda m: (-m.cost_usd, m.provider, m.model)),
        by_tool=sorted(tools.values(), key=lambda t: (-t.total_usd, t.server, t.tool)),
        other_usd=other,
        charged=sorted(charged.values(), key=lambda c: (-c.cost_usd, c.department, c.team)),
        links={k: v for k, v in links.items() if v},
    )


def run_detail(engine: sa.Engine, trace_id: str, period: str | None = None) -> Run | None:
    """One run with its tree: every call of the trace, or only those billed in `period`
    (as `top_runs` sees it); None if it has no call there."""
    t = EVENTS
    if not trace_id:
        return None
    q = sa.select(*(t.c[c] for c in _COLUMNS)).where(t.c.trace_id == trace_id)
    if period is not None:
        q = q.where(_in_month(t, period))
    with engine.connect() as conn:
        rows = conn.execute(q).all()
    return run_of(trace_id, build_trees(rows)) if rows else None


def top_runs(engine: sa.Engine, period: str, top: int = 20, department: str | None = None) -> list[Run]:
    """The `top` agent runs (traces of more than one call) of the month by cost, with trees.
    `department`: only calls charged to it."""
    t = EVENTS
    total = sa.func.sum(t.c.cost_pico)
    best = (
        sa.select(t.c.trace_id)
        .where(
            t.c.trace_id.in_(_linked_traces(period)),
            _in_month(t, period),
            *([t.c.department == department] if department else []),
        )
        .group_by(t.c.trace_id)
        .having(sa.func.count() > 1)
        .order_by(total.desc(), t.c.trace_id)
        .limit(top)
    )
    with engine.connect() as conn:
        ids = [r[0] for r in conn.execute(best)]
    runs = [
        run_of(roots[0].trace_id, roots)
        for roots in _traces(engine, _select(period, department).where(t.c.trace_id.in_(ids)))
    ]
    return sorted(runs, key=lambda r: (-r.cost_usd, r.trace_id))


def _table(title: str, header: str, rows: list[str], empty: str) -> str:
    return "\n".join([title, "", header, *(rows or [empty])])


def tools_table(period: str, rows: list[ToolCost]) -> str:
    return _table(
        f"Tool costs {period} (sub-calls: LLM and tool calls made while serving the tool's calls)",
        f"{'SERVER':<16} {'TOOL':<24} {'CALLS':>7} {'ERRORS':>7} {'SUBCALLS':>9} {'OWN USD':>14} {'SUBCALLS USD':>14} {'TOTAL USD':>14}",
        [
            f"{r.server:<16} {r.tool:<24} {r.calls:>7,} {r.errors:>7,} {r.subcalls:>9,} "
            f"{usd(r.own_usd):>14} {usd(r.subcall_usd):>14} {usd(r.total_usd):>14}"
            for r in rows
        ],
        "(no tool calls this month)",
    )


def runs_table(period: str, runs: list[Run]) -> str:
    table = _table(
        f"Top agent runs {period} by cost",
        f"{'TRACE':<34} {'PAYER':<24} {'CALLS':>6} {'TOOLS':>6} {'LLM':>6} {'DEPTH':>6} {'FAN-OUT':>8} {'SECONDS':>8} {'COST USD':>14}",
        [
            f"{r.trace_id:<34} {r.department + '/' + r.team:<24} {r.calls:>6,} {r.tool_calls:>6,} {r.llm_calls:>6,} "
            f"{r.depth:>6} {r.fan_out:>8} {r.duration_ms / 1000:>8.1f} {usd(r.cost_usd):>14}"
            for r in runs
        ],
        "(no agent runs this month: no calls linked by traceparent, X-Meterline-Run or their content)",
    )
    return "\n\n".join([table, *(run_text(r) for r in runs)])


def run_text(run: Run) -> str:
    """What a run's cost is made of: by model, by tool, by team charged; how its calls linked."""

    def line(what: str, name: str, calls: int, cost: Decimal, more: str = "") -> str:
        return f"  {what:<8} {name:<36} {calls:>6,} calls {usd(cost):>14}{more}"

    lines = [f"Run {run.trace_id}: {run.calls} calls, {usd(run.cost_usd)} USD, paid by {run.department}/{run.team}"]
    lines += [line("model", f"{m.provider}/{m.model}", m.calls, m.cost_usd) for m in run.by_model]
    lines += [
        line("tool", f"{t.server}/{t.tool}", t.calls, t.own_usd, f"   with its {t.subcalls:,} sub-calls {usd(t.total_usd)}")
        for t in run.by_tool
    ]
    others = sum(1 for r in run.roots for n in r.walk() if n.kind == "mcp" and not n.is_tool_call)
    if others:
        lines.append(line("mcp", "other requests", others, run.other_usd))
    lines += [line("charged", f"{c.department}/{c.team}", c.calls, c.cost_usd) for c in run.charged]
    lines.append("  linked:  " + ", ".join(f"{k} {v}" for k, v in run.links.items()))
    return "\n".join(lines)


def tree_text(node: CallNode, indent: str = "") -> str:
    """A call tree, one call a line: what it was, who paid, its own and its tree's cost."""
    line = (
        f"{indent}{node.call_id}  {node.kind:<9} {node.what:<32} {node.how_linked:<13} {node.status:<14} "
        f"{node.team} (key {node.key_team})  own {usd(node.cost_usd)}  total {usd(node.total_usd)}"
    )
    return "\n".join([line, *(tree_text(c, indent + "  ") for c in node.children)])
