"""The ledger writer's child process: segment writes off the serving process's GIL.

Reading a sealed segment, decoding it, fitting it to the columns and inserting it with its
rollups and run links is pure Python work; in the serving process it held the GIL ~10% of the
time under load, and the event loop waited for it. `WriterProcess` runs that work in a child
(`python -c "from meterline.costing.writer_process import main; main()"`), one per serving process. The parent's writer
thread (ingest.LedgerWriter) still seals, orders, unlinks and tells the observers; it sends the
child one request at a time and blocks on the pipe, the GIL released, for the answer.

Nothing about durability moves: a write is idempotent and the parent deletes a segment only
after the child said it was committed, so a child killed mid-write (or a parent killed while
its child writes) leaves the segment to be written again, counted once.

The pipe and the child's life are child_process.py's: the first frame carries the database URL,
and the child exits when its parent closes the pipe or dies, even while a database call hangs.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from .child_process import Child, ChildFailed, ChildGone, child_main, short
from .pacing import Pace

log = logging.getLogger("meterline.ledger")


class LedgerUnreachable(sa.exc.SQLAlchemyError):
    """The child could not reach the database (its own SQLAlchemy, driver or disk error).

    A SQLAlchemyError, so that whatever treats an unreachable database in the serving process
    (the writer's backoff and `degraded`, the admin API's 503) treats this one alike."""


class WriterFailed(Exception):
    """The child's write failed for another reason (a bug): logged, retried, as in thread mode."""


WriterGone = ChildGone  # the child died twice running on the same request (an OSError: the writer backs off)


class WriterProcess(Child):
    """A handle on the writer child of this process, started on first use and restarted if it dies.

    Parameters:
    database: the ledger's URL, with its password (the child makes its own engine from it).
    """

    def __init__(self, database: str):
        super().__init__("ledger writer", "costing.writer_process", {"database": database})

    def write_segment(self, path: Path, rejected: Path, pace_seconds: float = 0.0) -> tuple[int, list[str]]:
        """ingest.write_segment, in the child: (events new, call ids that landed). With
        `pace_seconds`, paced for up to that long (pacing.Pace)."""
        r = self._ask({"op": "write", "path": str(path), "rejected": str(rejected), "pace": pace_seconds})
        return int(r["written"]), [str(i) for i in r["landed"]]

    def adopt(self, root: str | os.PathLike[str]) -> int:
        """ingest.adopt_orphans, in the child."""
        return int(self._ask({"op": "adopt", "root": os.fspath(root)})["written"])

    def sweep_moves(self) -> None:
        """run_ledger.sweep_moves, in the child."""
        self._ask({"op": "sweep"})

    def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        try:
            return self.call(request)
        except ChildFailed as e:
            raise (LedgerUnreachable(str(e)) if e.kind == "unreachable" else WriterFailed(str(e))) from None


# -- the child ------------------------------------------------------------------------------


class _Session:
    def __init__(self, hello: dict[str, Any]):
        from .engine import create_engine

        self.engine = create_engine(str(hello["database"]))

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        from .ingest import adopt_orphans, write_segment
        from .run_ledger import sweep_moves

        try:
            if request["op"] == "write":
                pace = Pace(float(request["pace"])) if request.get("pace") else None
                written, landed = write_segment(self.engine, Path(request["path"]), Path(request["rejected"]), pace)
                return {"ok": True, "written": written, "landed": landed}
            if request["op"] == "adopt":
                return {"ok": True, "written": adopt_orphans(self.engine, request["root"])}
            sweep_moves(self.engine)
            return {"ok": True}
        except (sa.exc.SQLAlchemyError, sqlite3.Error, OSError) as e:
            return {"ok": False, "kind": "unreachable", "error": short(e)}

    def close(self) -> None:
        self.engine.dispose()


def main() -> None:
    child_main(_Session)


if __name__ == "__main__":
    main()


__all__ = ["LedgerUnreachable", "WriterFailed", "WriterGone", "WriterProcess"]
