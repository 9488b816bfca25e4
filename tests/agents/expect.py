"""What the ledger should say about agent runs, and how much of it it does say.

Each run's clients recorded the calls it made (tests/agents/conftest.py `Run`), in order. The
truth that follows from that, with no help from the client:
- the run's first LLM call is its root (no parent, link empty); its trace id is the run's;
- every later LLM turn continues the one before it (parent: that turn, link `continuation`);
- each MCP tools/call was asked for by the latest LLM turn before it (link `tool_request`);
- each LLM sub-call the tool server made for `summarize` descends from that tools/call
  (link `traceparent`: the server forwards the trace context it got).
Other MCP requests (server/discover, tools/list) belong to no answer of the LLM: they may stay
roots of their own, but must never land in another run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from tests.agents.conftest import Run


@dataclass
class Want:
    call_id: str
    run: str  # the run's tag
    what: str  # for messages: "llm turn 2", "tools/call lookup", "sub-call of summarize"
    parent: str  # expected parent_call_id ("" for the root)
    link: str  # expected link


@dataclass
class Score:
    wanted: list[Want]
    right: int = 0
    wrong_run: list[str] = field(default_factory=list)  # calls linked into another run's trace
    missing: list[str] = field(default_factory=list)  # calls not in the ledger
    misses: list[str] = field(default_factory=list)  # every call not right, and why

    @property
    def share(self) -> float:
        return self.right / len(self.wanted) if self.wanted else 0.0

    def summary(self) -> str:
        head = f"{self.right}/{len(self.wanted)} calls linked right ({self.share:.0%}), {len(self.wrong_run)} into a wrong run"
        return "\n".join([head, *self.misses[:40]])


def wanted(runs: list[Run], subcalls: list[tuple[str, str]]) -> list[Want]:
    """The calls of each run, with their true parent and link."""
    out: list[Want] = []
    for run in runs:
        turn: str | None = None
        turns = 0
        summarized: dict[str, str] = {}  # text -> the summarize tools/call's id
        for m in run.made:
            if m.kind == "llm":
                turns += 1
                out.append(Want(m.call_id, run.tag, f"llm turn {turns}", turn or "", "continuation" if turn else ""))
                turn = m.call_id
            elif m.method == "tools/call":
                assert turn is not None, f"run {run.tag}: a tool call before any LLM call"
                out.append(Want(m.call_id, run.tag, f"tools/call {m.tool} after turn {turns}", turn, "tool_request"))
                if m.tool == "summarize":
                    summarized[m.arguments["text"]] = m.call_id
        for text, call_id in subcalls:
            if text in summarized:
                out.append(Want(call_id, run.tag, f"sub-call of summarize({text!r})", summarized[text], "traceparent"))
    return out


def score(runs: list[Run], subcalls: list[tuple[str, str]], events: dict[str, dict[str, Any]]) -> Score:
    s = Score(wanted(runs, subcalls))
    roots = {w.run: w.call_id for w in s.wanted if w.what == "llm turn 1"}
    trace_of = {tag: events[cid]["trace_id"] for tag, cid in roots.items() if cid in events}
    run_of_trace: dict[str, list[str]] = {}
    for tag, trace in trace_of.items():
        run_of_trace.setdefault(trace, []).append(tag)
    for w in s.wanted:
        e = events.get(w.call_id)
        if e is None:
            s.missing.append(w.call_id)
            s.misses.append(f"{w.run} {w.what} {w.call_id}: not in the ledger")
            continue
        others = [t for t in run_of_trace.get(e["trace_id"], []) if t != w.run]
        if others:
            s.wrong_run.append(w.call_id)
        got = (e["trace_id"] == trace_of.get(w.run), e["parent_call_id"] or "", e.get("link") or "")
        if got == (True, w.parent, w.link) and len(run_of_trace[e["trace_id"]]) == 1:
            s.right += 1
        else:
            s.misses.append(
                f"{w.run} {w.what} {w.call_id}: parent {got[1] or '-'} link {got[2] or '-'}"
                f" (want {w.parent or '-'} {w.link or '-'}){'' if got[0] else ' in trace ' + e['trace_id'][:8]}"
                f"{' INTO RUN ' + ','.join(others) if others else ''}"
            )
    # Calls outside the truth (discovery, tools/list) must not join another run either.
    for run in runs:
        for m in run.made:
            e = events.get(m.call_id)
            if m.kind == "mcp" and m.method != "tools/call" and e is not None:
                others = [t for t in run_of_trace.get(e["trace_id"], []) if t != run.tag]
                if others:
                    s.wrong_run.append(m.call_id)
                    s.misses.append(f"{run.tag} {m.method} {m.call_id}: INTO RUN {','.join(others)}")
    return s


def cost(rows: list[dict[str, Any]]) -> Decimal:
    return sum((Decimal(r["cost_usd"]) for r in rows), Decimal(0))
