"""A local append-only journal of events: what makes the ledger lossless.

The proxy appends an event here before the last bytes of a response leave, with one
`write(2)` of one line: from then on the event survives the process being killed (the kernel
holds it). A background writer (ingest.py) moves sealed segments into the database in order
and deletes them only once committed, so a database outage or a crash loses nothing, and
idempotent inserts mean a replayed segment is never counted twice. The active segment is
fsynced every `fsync_interval` seconds, which bounds what a power loss (not a process crash)
could take.

A disk that refuses a write (full, or read-only) leaves no partial line behind: the segment is
cut back to its last whole event, and the event is held in memory, in order, until the writer
thread's `retry` gets it onto the disk. Meanwhile `healthy` is False and the proxy refuses new
calls (503 `spool_unavailable`) rather than serve calls it could not record, so what is held is
at most the calls in flight when the disk filled; at a clean stop it goes straight into the
ledger (ingest.LedgerWriter.stop). Only a SIGKILL while the disk refuses loses it.

`server.spool_dir` is a root shared by every serving process of a host: each process
`claim`s a folder of its own inside it and holds that folder's lock while it lives. A folder
whose lock is free belongs to a process that is gone; `orphans` hands such folders, locked, to
whoever writes them into the ledger (a live proxy, or any command that reads the ledger), so a
call acknowledged before a SIGKILL reaches every report on that host without a restart.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import secrets
import shutil
import socket
import threading
import time
from collections import deque
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Protocol

import orjson

from .errors import ConfigError

log = logging.getLogger("meterline.spool")

SUFFIX = ".jsonl"
LOCK = ".lock"
REJECTED = "rejected"


class EventSpool(Protocol):
    """Where the proxy puts a finished call's event before the client gets the response's end.

    Two kinds: `Spool` (this module, a folder on the local disk: the event is durable when
    `append` returns, and it returns None) and `jetstream.JetStreamSpool` (a NATS JetStream
    stream: `append` returns an awaitable that completes once the broker acknowledged the
    event, which the response's last bytes wait for).
    """

    def append(self, event: dict[str, Any]) -> Awaitable[None] | None: ...

    def pending(self) -> int:
        """Events not yet in the ledger database, as far as this process knows."""
        ...


class Spool:
    """Parameters:
    directory: this process's own spool folder; a second process using it is refused.
    held_lock: the folder's lock file, already held (`claim` passes it, so the folder is
        never unlocked between being made and being used).
    """

    def __init__(self, directory: str | os.PathLike[str], *, held_lock: IO[str] | None = None):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        lockfile = held_lock or _try_lock(self.dir)
        if lockfile is None:
            raise ConfigError("spool folder is in use by another meterline process", key="server.spool_dir")
        self._lockfile = lockfile
        # A folder `claim` made is removed on a clean close once everything in it is written.
        self.remove_when_spent = False
        self._lock = threading.Lock()
        self._seq = 0
        self._fd = -1
        self._dirty = False
        self._unwritten: deque[bytes] = deque()  # events the disk refused, oldest first
        self.error = ""  # why the disk refused the last write; "" while it takes them
        self._open_segment()

    def _open_segment(self) -> None:
        self._seq += 1
        path = self.dir / f"{time.time_ns():020d}-{os.getpid()}-{self._seq:06d}{SUFFIX}"
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._active = path
        self._count = 0
        self._size = 0  # bytes of whole events in the active segment
        self._torn = False  # a refused write left part of an event that could not be cut off

    @property
    def healthy(self) -> bool:
        """False while the disk refuses writes (and events wait in memory)."""
        return not self.error

    def append(self, event: dict[str, Any]) -> None:
        """Durable against a process crash when this returns (nothing to wait for), unless the
        disk refused it: then it waits in memory for `retry`, and `healthy` turns False."""
        line = orjson.dumps(event) + b"\n"
        with self._lock:
            if self._unwritten or not self._write(line):
                self._unwritten.append(line)

    def _write(self, line: bytes) -> bool:
        """One event onto the active segment, whole or not at all (under the lock)."""
        data = b"\n" + line if self._torn else line
        try:
            if os.write(self._fd, data) != len(data):
                raise OSError(errno.ENOSPC, "the disk took part of an event")
        except OSError as e:
            self.error = f"the spool folder {self.dir} is not writable: {e.strerror or e}"
            try:
                os.ftruncate(self._fd, self._size)  # no partial line left to spoil the next
                self._torn = False
            except OSError:
                # The next write ends the partial line first, so the reader skips it alone
                # (the event itself is kept here either way).
                self._torn = True
            return False
        if self._torn:
            self._torn = False
            self._size = os.fstat(self._fd).st_size
        else:
            self._size += len(data)
        self._count += 1
        self._dirty = True
        return True

    def retry(self) -> bool:
        """Write the events the disk refused, in order; True once none waits (healthy again)."""
        with self._lock:
            while self._unwritten:
                if not self._write(self._unwritten[0]):
                    return False
                self._unwritten.popleft()
            self.error = ""
            return True

    def take_unwritten(self) -> list[dict[str, Any]]:
        """The events still waiting in memory, handed over (to go into the ledger directly)."""
        with self._lock:
            lines, self._unwritten = list(self._unwritten), deque()
        return [row for row in map(decode_event, lines) if row is not None]

    def sync(self) -> None:
        with self._lock:
            fd, dirty, self._dirty = self._fd, self._dirty, False
            if dirty:
                fd = os.dup(fd)  # the segment may be sealed meanwhile; sync our own handle
        if dirty:
            os.fsync(fd)
            os.close(fd)

    def seal(self) -> list[Path]:
        """Close the active segment if it holds events; return every sealed segment, oldest first."""
        old_fd = -1
        with self._lock:
            if self._count:
                old_fd = self._fd
                self._dirty = False
                self._open_segment()
            active = self._active
        if old_fd >= 0:
            # Outside the lock: appends on the event loop never wait for a disk flush.
            os.fsync(old_fd)
            os.close(old_fd)
        return sorted(p for p in self.dir.glob(f"*{SUFFIX}") if p != active)

    def pending(self) -> int:
        """Events not yet moved to the database (sealed segments, the active one, memory)."""
        return len(self._unwritten) + sum(1 for p in self.dir.glob(f"*{SUFFIX}") for _ in _lines(p))

    def close(self) -> None:
        if not self.retry():
            log.error("%d events the disk refused are lost (%s)", len(self._unwritten), self.error)
        with self._lock:
            os.fsync(self._fd)
            os.close(self._fd)
            if not self._count:
                self._active.unlink(missing_ok=True)
        if self.remove_when_spent:
            remove_if_spent(self.dir)  # still under our lock
        self._lockfile.close()


def claim(root: str | os.PathLike[str]) -> Spool:
    """A new folder of this process's own inside `root`, locked for as long as the Spool lives.

    The folder is made and locked under a hidden name, then renamed: an adopter scanning the
    root never sees a folder whose owner has not locked it yet.
    """
    base = Path(root)
    try:
        base.mkdir(parents=True, exist_ok=True)
        name = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        staging = base / f".claim-{name}"
        staging.mkdir()
        lockfile = _try_lock(staging)
        assert lockfile is not None  # nobody else knows the hidden name
        staging.rename(base / name)
    except OSError as e:
        raise ConfigError(f"cannot create a spool folder in {base}: {e.strerror or e}", key="server.spool_dir") from None
    spool = Spool(base / name, held_lock=lockfile)
    spool.remove_when_spent = True
    return spool


@contextmanager
def orphaned(folder: Path) -> Iterator[bool]:
    """Lock `folder` if its owner is gone; yields whether it was (the lock is held inside)."""
    lockfile = _try_lock(folder, create=False)
    try:
        yield lockfile is not None
    finally:
        if lockfile is not None:
            lockfile.close()


def candidates(root: str | os.PathLike[str]) -> list[Path]:
    """The folders under `root` that may hold another process's events, oldest name first.

    The root itself is one: a spool written before folders were per process keeps its
    segments there.
    """
    base = Path(root)
    try:
        subdirs = sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name != REJECTED)
    except FileNotFoundError:
        return []
    return [base, *subdirs]


def segments(folder: Path) -> list[Path]:
    return sorted(folder.glob(f"*{SUFFIX}"))


def remove_if_spent(folder: Path) -> None:
    """Delete an adopted folder once it holds nothing but its lock (events set aside stay)."""
    if any(p.name != LOCK for p in folder.iterdir()):
        return
    shutil.rmtree(folder, ignore_errors=True)


def _try_lock(folder: Path, create: bool = True) -> IO[str] | None:
    """The folder's lock file, held; None if another process holds it (or, with create=False,
    if there is no lock file: not a spool folder, or one being removed)."""
    try:
        f = open(folder / LOCK, "a" if create else "r+")  # noqa: SIM115 - the caller holds it
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        return None
    return f


def read_segment(path: Path) -> list[dict[str, Any]]:
    """The events of a segment; a torn last line (a crash mid-write) is skipped."""
    lines = path.read_bytes().split(b"\n")[:-1]  # what follows the last newline: nothing, or a torn line
    return [row for row in map(decode_event, lines) if row is not None]


def decode_event(data: bytes) -> dict[str, Any] | None:
    """An event as `append` wrote it (orjson), its `ts` a datetime again; None if torn or not one."""
    try:
        row = orjson.loads(data)
        row["ts"] = datetime.fromisoformat(row["ts"])
    except (orjson.JSONDecodeError, TypeError, KeyError, ValueError):
        return None
    return row if isinstance(row, dict) else None


def _lines(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        for line in f:
            if line.endswith(b"\n"):
                yield line
