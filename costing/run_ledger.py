"""Agent runs completed in the ledger: links the memory of one process could not make.

A proxy links a call to its run at admission when it served the call that produced the
call's clues (costing/run_links.py). With several replicas, or `serve --workers`, the
producer may have been served elsewhere: the call then starts a trace of its own and is
spooled with the clues it carried (`run_asked`), as its producer is with the clues it made
(`run_produced`). Whichever of the two lands second links them, in the writer's transaction:

- the call gets its parent and `link`;
- its trace (fresh at admission, so its own and its descendants') moves into the parent's:
  every event of it is rewritten, and the move is remembered (`trace_moves`) so that calls of
  the old trace landing later, from any replica, follow.

The payer is not changed here: a link found after the fact moves a call in its run, never
onto another team's bill (both calls are of one team's keys anyway).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from functools import cache
from typing import Any

import sqlalchemy as sa

from .run_links import DEFAULT_WINDOW, TOOL_REQUEST, same_tool
from .tables import EVENTS, RUN_CLUES, RUN_WAITS, TRACE_MOVES

WINDOW = timedelta(seconds=DEFAULT_WINDOW)
SWEEP = timedelta(minutes=10)  # moves re-applied on each PostgreSQL write, for calls that raced them
MAX_HOPS = 32


def link_runs(conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
    """Link the newly written `rows` into their runs, and earlier calls waiting for them."""
    if not rows:
        return
    _follow_moves(conn, rows)
    produced = [(r, clue, tool) for r in rows for clue, tool in r.get("run_produced") or ()]
    if produced:
        # Clues past their window link nothing: dropped as new ones come (an indexed range).
        cutoff = min(r["ts"] for r, _, _ in produced) - 2 * WINDOW
        conn.execute(sa.delete(RUN_CLUES).where(RUN_CLUES.c.ts < cutoff))
        conn.execute(sa.delete(RUN_WAITS).where(RUN_WAITS.c.ts < cutoff))
        conn.execute(
            sa.insert(RUN_CLUES),
            [
                {"team": r["key_team"], "clue": clue, "tool": tool, "call_id": r["call_id"], "trace_id": r["trace_id"], "ts": r["ts"]}
                for r, clue, tool in produced
            ],
        )
    for r in rows:
        asked = r.get("run_asked")
        if asked and not _resolve(conn, r["call_id"], r["key_team"], asked, r["ts"]):
            conn.execute(
                sa.insert(RUN_WAITS),
                [
                    {"call_id": r["call_id"], "clue": c, "team": r["key_team"], "tool": asked.get("tool", ""),
                     "kind": asked.get("kind", ""), "ts": r["ts"]}  # fmt: skip
                    for c in dict.fromkeys(asked["clues"])
                ],
            )
    if produced:
        _wake(conn, {(r["key_team"], clue) for r, clue, _ in produced})


def _wake(conn: sa.Connection, clues: set[tuple[str, str]]) -> None:
    """Calls that waited for one of `clues`: linked now if they can be."""
    w = RUN_WAITS
    waiting: dict[str, dict[str, Any]] = {}
    for team, chunk in _by_team(clues):
        q = sa.select(w.c.call_id, w.c.clue, w.c.team, w.c.tool, w.c.kind, w.c.ts).where(w.c.team == team, w.c.clue.in_(chunk))
        for row in conn.execute(q):
            entry = waiting.setdefault(row.call_id, {"team": row.team, "tool": row.tool, "kind": row.kind, "ts": row.ts, "clues": []})
            entry["clues"].append(row.clue)
    for call_id, entry in waiting.items():
        # All its clues count, not only those that just landed: the latest producer wins.
        all_clues = [c for (c,) in conn.execute(sa.select(w.c.clue).where(w.c.call_id == call_id))]
        entry["clues"] = all_clues or entry["clues"]
        if _resolve(conn, call_id, entry["team"], entry, entry["ts"]):
            conn.execute(sa.delete(w).where(w.c.call_id == call_id))


def _resolve(conn: sa.Connection, call_id: str, team: str, asked: dict[str, Any], ts: datetime) -> bool:
    """Link `call_id` to the latest call that produced its clues; True when that question is
    settled (linked, or ambiguous: two runs made its clues, and no later landing changes that)."""
    found = _producers(conn, call_id, team, asked, ts)
    if not found:
        return False
    if len({f.trace_id for f in found}) > 1:
        return True  # ambiguous: left a root of its own rather than put in a wrong run
    parent = max(found, key=lambda f: (f.ts, f.call_id))
    _link(conn, call_id, parent.call_id, parent.trace_id, asked.get("kind") or "continuation")
    return True


def producer_of(engine: sa.Engine, call_id: str, team: str, asked: dict[str, Any], ts: datetime) -> tuple[str, str] | None:
    """(call id, trace id) of the call in the ledger that produced what `asked` names, if one
    run did: for a proxy placing a call at admission whose producer another process served."""
    with engine.connect() as conn:
        found = _producers(conn, call_id, team, asked, ts)
    if not found or len({f.trace_id for f in found}) > 1:
        return None
    parent = max(found, key=lambda f: (f.ts, f.call_id))
    return parent.call_id, parent.trace_id


def _producers(conn: sa.Connection, call_id: str, team: str, asked: dict[str, Any], ts: datetime) -> list[Any]:
    c = RUN_CLUES
    q = sa.select(c.c.call_id, c.c.trace_id, c.c.tool, c.c.ts).where(
        c.c.team == team,
        c.c.clue.in_(list(dict.fromkeys(asked["clues"]))[:64]),
        c.c.ts >= ts - WINDOW,
        c.c.ts <= ts,
        c.c.call_id != call_id,
    )
    found = list(conn.execute(q))
    if asked.get("kind") == TOOL_REQUEST:
        found = [f for f in found if same_tool(f.tool, asked.get("tool", ""))]
    return found


def _link(conn: sa.Connection, child: str, parent: str, parent_trace: str, link: str) -> None:
    t = EVENTS
    own = conn.execute(sa.select(t.c.trace_id, t.c.parent_call_id).where(t.c.call_id == child)).first()
    if own is None or own.parent_call_id:
        return  # gone, or linked meanwhile (by its trace context)
    conn.execute(
        sa.update(t).where(t.c.call_id == child).values(parent_call_id=parent, parent_span_id=parent, link=link)
    )
    if own.trace_id != parent_trace:
        move_trace(conn, own.trace_id, parent_trace)


def move_trace(conn: sa.Connection, old: str, new: str) -> None:
    """Every call of trace `old` joins trace `new` (followed to where `new` itself moved)."""
    m = TRACE_MOVES
    final = new
    for _ in range(MAX_HOPS):
        nxt = conn.execute(sa.select(m.c.new_trace).where(m.c.old_trace == final)).scalar()
        if nxt is None:
            break
        final = nxt
    if final == old:
        return  # a cycle: the two are one run already
    if conn.execute(sa.select(m.c.old_trace).where(m.c.old_trace == old)).first() is None:
        conn.execute(sa.insert(m).values(old_trace=old, new_trace=final))
    conn.execute(sa.update(m).where(m.c.new_trace == old).values(new_trace=final))
    conn.execute(sa.update(EVENTS).where(EVENTS.c.trace_id == old).values(trace_id=final))
    conn.execute(sa.update(RUN_CLUES).where(RUN_CLUES.c.trace_id == old).values(trace_id=final))


def sweep_moves(engine: sa.Engine) -> None:
    """Apply recent trace moves again. On PostgreSQL a call written while another replica's
    transaction moved its trace saw neither the move nor was seen by it (read committed);
    each writer runs this every few seconds, so such a call follows within that time."""
    if engine.dialect.name != "postgresql":
        return  # SQLite: one writer at a time, no such race
    m = TRACE_MOVES
    since = sa.func.now() - SWEEP
    with engine.begin() as conn:
        conn.execute(
            sa.update(EVENTS).where(EVENTS.c.trace_id == m.c.old_trace, m.c.ts > since).values(trace_id=m.c.new_trace)
        )


def _follow_moves(conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
    """Calls of a trace that moved before they landed go where it moved."""
    traces = list({r["trace_id"] for r in rows if r["trace_id"]})
    moved: dict[str, str] = {}
    for chunk in _chunks(traces, 500):
        moved.update((o, n) for o, n in conn.execute(_moves_of(), {"traces": chunk}))
    if not moved:
        return
    for old, new in moved.items():
        ids = [r["call_id"] for r in rows if r["trace_id"] == old]
        for chunk in _chunks(ids, 500):
            conn.execute(sa.update(EVENTS).where(EVENTS.c.call_id.in_(chunk)).values(trace_id=new))
    for r in rows:
        r["trace_id"] = moved.get(r["trace_id"], r["trace_id"])


@cache
def _moves_of() -> sa.Select[str, str]:
    """(old, new) of the moves of `traces`. Built once, `traces` bound at execution: nearly every
    batch asks (every call has a trace), and a statement built with the ids in it took about
    1.5 times as long to run (a bound value made and keyed per id)."""
    m = TRACE_MOVES
    return sa.select(m.c.old_trace, m.c.new_trace).where(m.c.old_trace.in_(sa.bindparam("traces", expanding=True)))


def _by_team(clues: set[tuple[str, str]]) -> Iterable[tuple[str, list[str]]]:
    teams: dict[str, list[str]] = {}
    for team, clue in clues:
        teams.setdefault(team, []).append(clue)
    for team, items in teams.items():
        for chunk in _chunks(items, 500):
            yield team, chunk


def _chunks(items: list[Any], n: int) -> Iterable[list[Any]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


__all__ = ["link_runs", "move_trace", "producer_of", "sweep_moves"]
