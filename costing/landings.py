"""Which of this process's recorded calls the ledger holds, for budgets and credits.

Both count a recorded call from memory until a read of the ledger includes it, then take it
from the read alone (budget_accountant.py, credit_accountant.py). A call must not be counted
twice, so each read has to know exactly which calls it holds. The local ledger writer says which
calls it committed (`on_written`), which saves asking the ledger about every recorded call at
each read; but it can only say so after its commit, and a read between the two sees those
calls in the ledger and still in memory. Spend counted twice refuses calls with budget left:
a segment's worth of calls, for as long as the writer's thread is held up between its commit
and its word. So the writer also says when a commit begins (`on_writing`), and a read taken
while one is under way asks the ledger about the calls pending, in the read's own transaction.

The read must be taken under the lease lock, before the sums are read. On SQLite that lock is
the database's write lock: no commit lands during the read, and the answer is exact. On
PostgreSQL a commit that begins after `resolve` and lands before the sums are read is counted
twice until the next read (the few milliseconds between two statements), never missed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol

import orjson
import sqlalchemy as sa

from .tables import EVENTS

CHUNK = 500  # call ids per IN (...) query


class Writer(Protocol):
    """What is followed: ingest.LedgerWriter. Every `on_writing` call is followed by one
    `on_written` call, with the ids committed (none when the commit failed)."""

    on_writing: list[Callable[[], None]]
    on_written: list[Callable[[list[str]], None]]


class Landings:
    """Parameters:
    wanted: whether calls are counted at all (no budget, no required credits: nothing recorded,
        and ids told by the writer would pile up unread).
    """

    def __init__(self, wanted: Callable[[], bool]):
        self.wanted = wanted
        self._followed = False
        self._landed: set[str] = set()
        self._writing = 0  # commits begun and not yet told
        self._lock = threading.Lock()

    def follow(self, writer: Writer) -> None:
        """Learn from `writer` which calls it committed. Before any call is recorded."""
        self._followed = True
        writer.on_writing.append(self.writing)
        writer.on_written.append(self.landed)

    def writing(self) -> None:
        with self._lock:
            self._writing += 1

    def landed(self, call_ids: list[str]) -> None:
        with self._lock:
            self._writing = max(0, self._writing - 1)
            if self.wanted():
                self._landed.update(call_ids)

    def resolve(self, conn: sa.Connection, pending: Callable[[], list[str]]) -> set[str]:
        """The recorded calls the ledger holds now, as far as the next read of `conn` sees it.
        `pending` gives the recorded calls not yet known to be there; they are looked up in the
        ledger only when the writer cannot say (none followed, or a commit under way)."""
        with self._lock:
            landed, self._landed = self._landed, set()
            unsure = not self._followed or self._writing > 0
        if unsure:
            landed |= in_ledger(conn, [c for c in pending() if c not in landed])
        return landed

    def discard(self) -> None:
        """Forget what the writer told (nothing is counted, so there is nothing to subtract)."""
        with self._lock:
            self._landed = set()


def in_ledger(conn: sa.Connection, call_ids: list[str]) -> set[str]:
    """Which of `call_ids` the ledger has.

    On SQLite each chunk is asked for in one parameter and answered in one row, the ids found
    as a JSON array. The driver lets go of the GIL for every row it steps to, and under load
    each step is a wait for the serving thread to give it back: asked with `IN (...)` and
    read row by row, it took about 76 µs a row at concurrency 16, up to 300 ms a refresh.
    psycopg reads a whole result in C, so PostgreSQL gets plain rows, for one array parameter.
    """
    found: set[str] = set()
    sqlite = conn.dialect.name == "sqlite"
    for i in range(0, len(call_ids), CHUNK):
        chunk = call_ids[i : i + CHUNK]
        if sqlite:
            ids = orjson.dumps(chunk).decode()
            found.update(orjson.loads(conn.execute(_FOUND_SQLITE, {"ids": ids}).scalar_one()))
        else:
            q = sa.select(EVENTS.c.call_id).where(EVENTS.c.call_id == sa.any_(sa.literal(chunk, _ID_ARRAY)))
            found.update(conn.execute(q).scalars())
    return found


_ID_ARRAY = sa.ARRAY(sa.String)
_FOUND_SQLITE = sa.text(
    f"SELECT json_group_array(call_id) FROM {EVENTS.name} WHERE call_id IN (SELECT value FROM json_each(:ids))"
)


__all__ = ["CHUNK", "Landings", "Writer", "in_ledger"]
