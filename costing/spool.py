"""A local append-only journal of events: what makes the ledger lossless.

The proxy appends an event here before the last bytes of a response leave, with one
`write(2)` of one line: from then on the event survives the process being killed (the kernel
holds it). A background writer (ingest.py) moves sealed segments into the database in order
and deletes them only once committed, so a database outage or a crash loses nothing, and
idempotent inserts mean a replayed segment is never counted twice. The active segment is
fsynced every `fsync_interval` seconds, which bounds what a power loss (not a process crash)
could take.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from .errors import ConfigError

SUFFIX = ".jsonl"


class Spool:
    """Parameters:
    directory: this process's own spool folder; a second process using it is refused.
    """

    def __init__(self, directory: str | os.PathLike[str]):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lockfile = open(self.dir / ".lock", "w")  # noqa: SIM115 - held for our lifetime
        try:
            fcntl.flock(self._lockfile, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lockfile.close()
            raise ConfigError(
                "spool folder is in use by another meterline process; give each replica its own",
                key="server.spool_dir",
            ) from None
        self._lock = threading.Lock()
        self._seq = 0
        self._fd = -1
        self._dirty = False
        self._open_segment()

    def _open_segment(self) -> None:
        self._seq += 1
        name = f"{time.time_ns():020d}-{os.getpid()}-{self._seq:06d}{SUFFIX}"
        self._active = self.dir / name
        self._fd = os.open(self._active, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._count = 0

    def append(self, event: dict[str, Any]) -> None:
        """Durable against a process crash when this returns."""
        line = orjson.dumps(event) + b"\n"
        with self._lock:
            os.write(self._fd, line)
            self._count += 1
            self._dirty = True

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
        """Events not yet moved to the database (sealed segments and the active one)."""
        return sum(1 for p in self.dir.glob(f"*{SUFFIX}") for _ in _lines(p))

    def close(self) -> None:
        with self._lock:
            os.fsync(self._fd)
            os.close(self._fd)
            if not self._count:
                self._active.unlink(missing_ok=True)
        self._lockfile.close()


def read_segment(path: Path) -> list[dict[str, Any]]:
    """The events of a segment; a torn last line (a crash mid-write) is skipped."""
    rows = []
    for line in _lines(path):
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        row["ts"] = datetime.fromisoformat(row["ts"])
        rows.append(row)
    return rows


def _lines(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        for line in f:
            if line.endswith(b"\n"):
                yield line
