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

The pipe: length-prefixed orjson frames on the child's stdin and stdout. The first request
carries the database URL (never on the command line, where `ps` shows it). The child exits on
end of file on its stdin (the parent closed it, or died), and on its parent's death even while a
database call hangs; it ignores SIGINT and SIGTERM, which a terminal or a service manager sends
to the whole process group: the parent drains through it first, then closes it.
"""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

import orjson
import sqlalchemy as sa

log = logging.getLogger("meterline.ledger")

_HEADER = struct.Struct(">I")


class LedgerUnreachable(sa.exc.SQLAlchemyError):
    """The child could not reach the database (its own SQLAlchemy, driver or disk error).

    A SQLAlchemyError, so that whatever treats an unreachable database in the serving process
    (the writer's backoff and `degraded`, the admin API's 503) treats this one alike."""


class WriterFailed(Exception):
    """The child's write failed for another reason (a bug): logged, retried, as in thread mode."""


class WriterGone(OSError):
    """The child died twice running on the same request (an OSError: the writer backs off)."""


class WriterProcess:
    """A handle on the writer child of this process, started on first use and restarted if it dies.

    Parameters:
    database: the ledger's URL, with its password (the child makes its own engine from it).
    """

    START_SECONDS = 60.0  # a child that has not answered its first request by then is replaced

    def __init__(self, database: str):
        self._database = database
        self._proc: subprocess.Popen[bytes] | None = None
        self._ready = False
        self._lock = threading.Lock()
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        """Start the child now (it imports for a fraction of a second), without waiting for it."""
        with self._lock:
            if self._proc is None:
                self._spawn()

    def write_segment(self, path: Path, rejected: Path) -> tuple[int, list[str]]:
        """ingest.write_segment, in the child: (events new, call ids that landed)."""
        r = self._call({"op": "write", "path": str(path), "rejected": str(rejected)})
        return int(r["written"]), [str(i) for i in r["landed"]]

    def adopt(self, root: str | os.PathLike[str]) -> int:
        """ingest.adopt_orphans, in the child."""
        return int(self._call({"op": "adopt", "root": os.fspath(root)})["written"])

    def sweep_moves(self) -> None:
        """run_ledger.sweep_moves, in the child."""
        self._call({"op": "sweep"})

    def close(self, timeout: float = 10.0) -> None:
        """End the child: end of file on its pipe, then a kill if it does not exit in `timeout`."""
        with self._lock:
            proc, self._proc = self._proc, None
            if proc is not None:
                _end(proc, timeout)

    def _call(self, request: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            for attempt in range(2):
                if self._proc is None:
                    self._spawn()
                proc = self._proc
                assert proc is not None and proc.stdin is not None and proc.stdout is not None
                try:
                    _send(proc.stdin, request)
                    reply = _receive(proc.stdout)
                except (OSError, EOFError) as e:  # it died (killed, out of memory): a new one, same request
                    _end(proc, 1.0)
                    self._proc = None
                    if attempt:
                        raise WriterGone(f"ledger writer process died twice running: {e or type(e).__name__}") from None
                    self.restarts += 1
                    log.error("ledger writer process %d died (exit %s); starting another", proc.pid, proc.returncode)
                    continue
                if reply.get("ok"):
                    return reply
                if reply.get("kind") == "unreachable":
                    raise LedgerUnreachable(reply.get("error", ""))
                raise WriterFailed(reply.get("error", ""))
        raise AssertionError("unreachable")

    def _spawn(self) -> None:
        self._proc = subprocess.Popen(
            # Not `-m`: the package imports this module first, and runpy warns of running it twice.
            [sys.executable, "-c", "from meterline.costing.writer_process import main; main()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0, close_fds=True,
        )  # fmt: skip
        assert self._proc.stdin is not None
        # Never the spool folder's lock: close_fds keeps the child from holding it past our death.
        _send(self._proc.stdin, {"database": self._database})


def _end(proc: subprocess.Popen[bytes], timeout: float) -> None:
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            pipe.close()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()  # a database call that hangs: nothing it holds is committed half
        proc.wait()


def _send(pipe: IO[bytes], message: dict[str, Any]) -> None:
    data = orjson.dumps(message)
    pipe.write(_HEADER.pack(len(data)) + data)


def _receive(pipe: IO[bytes]) -> dict[str, Any]:
    size = _HEADER.unpack(_read_exactly(pipe, _HEADER.size))[0]
    message: dict[str, Any] = orjson.loads(_read_exactly(pipe, size))
    return message


def _read_exactly(pipe: IO[bytes], n: int) -> bytes:
    chunks = []
    while n:
        chunk = pipe.read(n)
        if not chunk:
            raise EOFError("pipe closed")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


# -- the child ------------------------------------------------------------------------------


def _serve(inp: IO[bytes], out: IO[bytes]) -> None:
    from .engine import create_engine
    from .ingest import adopt_orphans, write_segment
    from .run_ledger import sweep_moves

    try:
        first = _receive(inp)
    except EOFError:
        return
    engine = create_engine(str(first["database"]))
    try:
        while True:
            try:
                request = _receive(inp)
            except EOFError:
                return  # the parent closed the pipe, or died
            reply: dict[str, Any]
            try:
                if request["op"] == "write":
                    written, landed = write_segment(engine, Path(request["path"]), Path(request["rejected"]))
                    reply = {"ok": True, "written": written, "landed": landed}
                elif request["op"] == "adopt":
                    reply = {"ok": True, "written": adopt_orphans(engine, request["root"])}
                else:
                    sweep_moves(engine)
                    reply = {"ok": True}
            except (sa.exc.SQLAlchemyError, sqlite3.Error, OSError) as e:
                reply = {"ok": False, "kind": "unreachable", "error": _short(e)}
            except Exception as e:  # noqa: BLE001 - answered, so the parent logs and retries as in thread mode
                log.exception("ledger writer process: %s failed", request.get("op"))
                reply = {"ok": False, "kind": "failed", "error": _short(e)}
            try:
                _send(out, reply)
            except BrokenPipeError:
                return  # the parent is gone; what was committed is committed, the segment stays for adoption
    finally:
        engine.dispose()


def _exit_with_parent(parent: int) -> None:
    """Exit once the parent is gone, even while a database call hangs (a transaction not
    committed is rolled back by the database; one committed is found again on replay)."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)


def _short(e: BaseException) -> str:
    return str(e).splitlines()[0][:200] if str(e) else type(e).__name__


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # The pipe is fd 0 and fd 1; anything printed goes to stderr instead of into a frame.
    inp = os.fdopen(os.dup(0), "rb", buffering=0)
    out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s[%(process)d]: %(message)s")
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    _serve(inp, out)


if __name__ == "__main__":
    main()


__all__ = ["LedgerUnreachable", "WriterFailed", "WriterGone", "WriterProcess"]
