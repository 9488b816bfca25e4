"""A child process behind a pipe: work a serving process hands off so it does not hold its GIL.

Two children use it: the ledger writer (writer_process.py) and the tokenizer
(tokenizer_process.py). The parent side, `Child`, starts its child on first use, sends one
request at a time and blocks on the pipe, the GIL released, for the answer; a child that dies
(killed, out of memory) is replaced and asked again once. The child side, `child_main`, answers
requests until its pipe closes or its parent dies.

The pipe: length-prefixed orjson frames on the child's stdin and stdout. The first frame
(`hello`) carries what the child needs to start, which may be a secret (the database URL):
never on the command line, where `ps` shows it. The child ignores SIGINT and SIGTERM, which a
terminal or a service manager sends to the whole process group: the parent stops it by
closing the pipe, after its own drain.
"""

from __future__ import annotations

import logging
import os
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import IO, Any, Protocol

import orjson

log = logging.getLogger("meterline.child")

_HEADER = struct.Struct(">I")


class ChildGone(OSError):
    """The child died twice running on the same request (an OSError: callers back off)."""


class ChildFailed(Exception):
    """The child answered that the request failed; `kind` says how (the child's own word)."""

    def __init__(self, kind: str, error: str):
        super().__init__(error)
        self.kind = kind


class Child:
    """A handle on one child process, started on first use and restarted if it dies.

    Parameters:
    name: what the child is, in messages ("ledger writer").
    module: the module under `meterline.` whose `main()` runs in the child (it calls `child_main`).
    hello: the first frame the child reads.
    bare: start the child without running `meterline.costing`'s __init__, which imports the
        whole core (SQLAlchemy and the tables: 0.5 s and ~50 MB); for a module that needs
        none of it, and imports its siblings by relative imports only.
    """

    def __init__(self, name: str, module: str, hello: dict[str, Any], *, bare: bool = False):
        self.name = name
        self._module = module
        self._hello = hello
        self._bare = bare
        self._proc: subprocess.Popen[bytes] | None = None
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

    def call(self, request: dict[str, Any]) -> dict[str, Any]:
        """The child's answer to `request`; ChildFailed if it says the request failed."""
        with self._lock:
            for attempt in range(2):
                if self._proc is None:
                    self._spawn()
                proc = self._proc
                assert proc is not None and proc.stdin is not None and proc.stdout is not None
                try:
                    _send(proc.stdin, request)
                    reply = _receive(proc.stdout)
                except (OSError, EOFError) as e:  # it died: a new one, the same request
                    _end(proc, 1.0)
                    self._proc = None
                    if attempt:
                        raise ChildGone(f"{self.name} process died twice running: {e or type(e).__name__}") from None
                    self.restarts += 1
                    log.error("%s process %d died (exit %s); starting another", self.name, proc.pid, proc.returncode)
                    continue
                if reply.get("ok"):
                    return reply
                raise ChildFailed(str(reply.get("kind", "failed")), str(reply.get("error", "")))
        raise AssertionError("unreachable")

    def close(self, timeout: float = 10.0) -> None:
        """End the child: end of file on its pipe, then a kill if it does not exit in `timeout`."""
        with self._lock:
            proc, self._proc = self._proc, None
            if proc is not None:
                _end(proc, timeout)

    def _spawn(self) -> None:
        # Not `-m`: the package imports the module first, and runpy warns of running it twice.
        code = f"from meterline.{self._module} import main; main()"
        if self._bare:
            code = _BARE_PACKAGE + code
        self._proc = subprocess.Popen(
            [sys.executable, "-c", code],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0, close_fds=True,
        )  # fmt: skip
        assert self._proc.stdin is not None
        # close_fds: the child never holds the parent's spool folder lock past the parent's death.
        _send(self._proc.stdin, self._hello)


# The package `meterline.costing` as an empty module with its search path, so that importing one
# of its modules does not run its __init__ (the modules it finds are the package's own files).
_BARE_PACKAGE = (
    "import importlib.util, sys, types; "
    "spec = importlib.util.find_spec('meterline.costing'); "
    "package = types.ModuleType('meterline.costing'); "
    "package.__path__ = list(spec.submodule_search_locations); "
    "sys.modules['meterline.costing'] = package; "
)


class Session(Protocol):
    def handle(self, request: dict[str, Any]) -> dict[str, Any]: ...

    def close(self) -> None: ...


def child_main(open_session: Callable[[dict[str, Any]], Session]) -> None:
    """The child's whole life: `open_session(hello)`, then one answer per request.

    A request that raises is answered {"ok": false, "kind": "failed"} and logged; the session
    maps the errors it knows to kinds of its own."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # The pipe is fd 0 and fd 1; anything printed goes to stderr instead of into a frame.
    inp = os.fdopen(os.dup(0), "rb", buffering=0)
    out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s[%(process)d]: %(message)s")
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    try:
        hello = _receive(inp)
    except EOFError:
        return
    session = open_session(hello)
    try:
        while True:
            try:
                request = _receive(inp)
            except EOFError:
                return  # the parent closed the pipe, or died
            try:
                reply = session.handle(request)
            except Exception as e:  # noqa: BLE001 - answered, so the parent logs and retries
                log.exception("%s failed", request.get("op"))
                reply = {"ok": False, "kind": "failed", "error": short(e)}
            try:
                _send(out, reply)
            except BrokenPipeError:
                return  # the parent is gone
    finally:
        session.close()


def short(e: BaseException) -> str:
    """An error in one line of at most 200 characters."""
    return str(e).splitlines()[0][:200] if str(e) else type(e).__name__


def _exit_with_parent(parent: int) -> None:
    """Exit once the parent is gone, even while the child's work hangs (a database call, say)."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)


def _end(proc: subprocess.Popen[bytes], timeout: float) -> None:
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            pipe.close()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()  # work that hangs: nothing a child does is committed half
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


__all__ = ["Child", "ChildFailed", "ChildGone", "Session", "child_main", "short"]
