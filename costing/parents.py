"""Parent links: a call recorded before or elsewhere than its parent is tied to it later."""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from typing import Any

import sqlalchemy as sa

from .run_links import TRACEPARENT
from .tables import EVENTS


def link_parents(conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
    """Tie calls to parents recorded elsewhere (another replica, or a parent that ended later).

    A call's id is its span id, so a child's `parent_span_id` names its parent once that
    parent is in the ledger, in the same trace: a span id alone is no proof (call ids are not
    secret, so a client could name anyone's call as the parent span of a trace of its own).
    """
    t = EVENTS
    parents_in_ledger, children_in_ledger = _lookups()
    found: list[str] = []
    orphans = [r["call_id"] for r in rows if r["parent_span_id"] and not r["parent_call_id"]]
    for chunk in _chunks(orphans, 500):
        found += conn.execute(parents_in_ledger, {"ids": chunk}).scalars()
    for chunk in _chunks([r["call_id"] for r in rows], 500):
        found += conn.execute(children_in_ledger, {"ids": chunk}).scalars()
    for chunk in _chunks(found, 500):  # found first: most batches have none, and write nothing
        conn.execute(sa.update(t).where(t.c.call_id.in_(chunk)).values(parent_call_id=t.c.parent_span_id, link=TRACEPARENT))


@cache
def _same_trace() -> sa.Exists:
    """The parent is in the ledger, in the same trace. Built once: an alias's column collection
    is made on first use, and making it per batch was a tenth of the writer's CPU."""
    p = EVENTS.alias("p")
    return sa.exists().where(p.c.call_id == EVENTS.c.parent_span_id, p.c.trace_id == EVENTS.c.trace_id)


@cache
def _lookups() -> tuple[sa.Select[str], sa.Select[str]]:
    """(calls among `ids` whose parent is in the ledger, calls waiting for a parent among `ids`).
    Built once, `ids` bound at execution: a statement built per batch with its ids in it took
    about 1.6 times as long to run (a bound value made and keyed per id)."""
    t = EVENTS
    ids: sa.BindParameter[list[str]] = sa.bindparam("ids", expanding=True)
    return (
        sa.select(t.c.call_id).where(t.c.call_id.in_(ids), _same_trace()),
        sa.select(t.c.call_id).where(t.c.parent_call_id == "", t.c.parent_span_id.in_(ids), _same_trace()),
    )


def _chunks(items: list[Any], n: int) -> Iterable[list[Any]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


__all__ = ["link_parents"]
