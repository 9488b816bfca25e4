"""Parent links: a call recorded before or elsewhere than its parent is tied to it later."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from .tables import EVENTS


def link_parents(conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
    """Tie calls to parents recorded elsewhere (another replica, or a parent that ended later).

    A call's id is its span id, so a child's `parent_span_id` names its parent once that
    parent is in the ledger.
    """
    t = EVENTS
    p = t.alias("p")
    found = sa.select(p.c.call_id).where(p.c.call_id == t.c.parent_span_id).scalar_subquery()
    orphans = [r["call_id"] for r in rows if r["parent_span_id"] and not r["parent_call_id"]]
    for chunk in _chunks(orphans, 500):
        conn.execute(
            sa.update(t).where(t.c.call_id.in_(chunk)).values(parent_call_id=sa.func.coalesce(found, ""))
        )
    for chunk in _chunks([r["call_id"] for r in rows], 500):
        conn.execute(
            sa.update(t)
            .where(t.c.parent_call_id == "", t.c.parent_span_id.in_(chunk))
            .values(parent_call_id=t.c.parent_span_id)
        )


def _chunks(items: list[Any], n: int) -> Iterable[list[Any]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


__all__ = ["link_parents"]
