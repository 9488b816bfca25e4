"""Moves spooled events into the database in batches, in order, once each."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa

from .errors import LedgerWriteError
from .ledger_writes import write_events
from .months import charge_period
from .pacing import Pace, in_slices
from .run_ledger import sweep_moves
from .spool import (
    LOCK,
    REJECTED,
    Spool,
    candidates,
    orphaned,
    read_segment,
    remove_if_spent,
    segments,
)
from .tables import EVENTS
from .writer_process import WriterProcess

log = logging.getLogger("meterline.ledger")


@cache
def _column_limits() -> tuple[tuple[tuple[str, int], ...], tuple[tuple[str, int], ...]]:
    """(text columns and their lengths, integer columns and their largest values)."""
    texts, counts = [], []
    for c in EVENTS.columns:
        t = c.type.impl if isinstance(c.type, sa.TypeDecorator) else c.type  # SQLModel's AutoString
        if isinstance(t, sa.String) and t.length:
            texts.append((c.name, t.length))
        elif isinstance(t, sa.BigInteger):
            counts.append((c.name, 2**63 - 1))
        elif isinstance(t, sa.Integer):
            counts.append((c.name, 2**31 - 1))
    return tuple(texts), tuple(counts)


def fit_to_columns(row: dict[str, Any]) -> dict[str, Any]:
    """The event with text cut to its column's length and counts kept in its column's range.

    SQLite stores whatever it is given; PostgreSQL refuses a whole batch over one value too
    long (a model name matched by a glob, say) or too large (an upstream reporting absurd
    usage), and a refused batch would hold up every event spooled after it.
    """
    row.setdefault("link", "")  # spooled before the column existed
    texts, counts = _column_limits()
    get = row.get
    # Exact classes: a spooled event is decoded JSON (a bool is no count), and this runs for
    # every column of every event the writer writes.
    for name, limit in texts:
        v = get(name)
        if v.__class__ is str and len(v) > limit:
            row[name] = v[:limit]
    for name, limit in counts:
        v = get(name)
        if v.__class__ is int and not 0 <= v <= limit:
            row[name] = min(max(v, 0), limit)
    return row


class LedgerWriter:
    """A background thread that flushes the spool to the database every `interval` seconds.

    With `mode="process"` the thread hands each sealed segment to a child process that writes
    it (writer_process.py), and waits for its answer with the GIL released; the thread keeps
    the sealing, the order, the deletes and the observers, so nothing else changes.

    While the database is unreachable the segments stay on disk and `degraded` is True; they
    are replayed in order when it is back. A database that accepts connections but does not
    answer (a hung host, a network that drops packets) raises nothing for a while: `stalled`
    says so once a flush has gone `stall_seconds` without committing a segment.
    """

    ADOPT_SECONDS = 2.0  # how often the spool root is scanned for dead processes' folders
    PACED_SHARE = 0.5  # of an interval, the longest a periodic flush's segment is paced for (pacing.py)

    def __init__(
        self, engine: sa.Engine, spool: Spool, interval: float = 0.2, root: str | os.PathLike[str] | None = None, mode: str = "thread"
    ):
        """Parameters:
        root: the spool root this process's folder lies in; every ADOPT_SECONDS the writer also
            writes in the folders of this host's processes that are gone (see adopt_orphans).
        mode: "thread" writes in this process; "process" in a child of its own, from `start`
            on (`server.ledger_writer`). An in-memory SQLite database has no URL a child could
            open: it is written in the thread whatever the mode.
        """
        self.engine = engine
        url = engine.url
        in_memory = url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")
        self._child_url = url.render_as_string(hide_password=False) if mode == "process" and not in_memory else None
        self.child: WriterProcess | None = None  # from `start` on, in process mode
        self.spool = spool
        self.interval = interval
        self.root = root
        self.degraded = False
        self.last_error = ""
        self.written = 0
        # Told before each segment's commit, then its call ids once committed (none if it
        # failed): budgets and credits forget them as pending (landings.py).
        self.on_writing: list[Callable[[], None]] = []
        self.on_written: list[Callable[[list[str]], None]] = []
        self.stall_seconds = max(5.0, 20 * interval)
        self._progress: float | None = None  # while flushing: when the last segment committed
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="meterline-ledger", daemon=True)

    def start(self) -> None:
        if self._child_url is not None:
            self.child = WriterProcess(self._child_url)
            self.child.start()
        self._thread.start()

    def stop(self, flush: bool = True) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        try:
            if flush:
                self.flush()
                if not self.spool.healthy:  # what the disk still refuses goes straight in
                    written, refused = write_rows(self.engine, self.spool.take_unwritten(), "memory")
                    self.written += written
                    if refused:
                        log.error("%d events the spool's disk refused were refused by the ledger too", len(refused))
        except (sa.exc.SQLAlchemyError, OSError) as e:
            log.warning("ledger not reachable at shutdown; %s stays spooled: %s", self.spool.dir, _short(e))
        finally:
            if self.child is not None:
                self.child.close()

    @property
    def stalled(self) -> bool:
        progress = self._progress
        return progress is not None and time.monotonic() - progress > self.stall_seconds

    def flush(self, paced: bool = False) -> int:
        """Write everything spooled so far. Raises if the database refuses.

        paced: spread the flush's CPU over up to PACED_SHARE of an interval (pacing.py), as the
            periodic flushes do; a flush asked for (a drain, the admin API's) runs flat out.
        """
        with self._flush_lock, self._waiting_on_database():
            return self._flush(self.interval * self.PACED_SHARE if paced else 0.0)

    @contextmanager
    def _waiting_on_database(self) -> Iterator[None]:
        """While inside, `stalled` says so once the database has not answered for stall_seconds
        (a flush, and the adoption and move sweeps between flushes, which hang just the same)."""
        self._progress = time.monotonic()
        try:
            yield
        finally:
            self._progress = None

    def _flush(self, pace_seconds: float) -> int:
        n = 0
        self.spool.retry()  # events the disk refused, if any, onto it first (in order)
        deadline = time.perf_counter() + pace_seconds
        for path in self.spool.seal():
            # The pacing's budget is the flush's, not each segment's: a backlog (the database
            # was away) is written flat out once it is spent.
            pace_for = deadline - time.perf_counter()
            pace_for = pace_for if pace_for > Pace.SLICE_SECONDS else 0.0
            for announce in self.on_writing:
                announce()
            landed: list[str] = []
            try:
                if self.child is not None:
                    written, landed = self.child.write_segment(path, self.spool.dir / REJECTED, pace_for)
                else:
                    pace = Pace(pace_for) if pace_for else None
                    written, landed = write_segment(self.engine, path, self.spool.dir / REJECTED, pace)
                path.unlink()
            finally:
                for observer in self.on_written:
                    observer(landed)
            n += written
            self._progress = time.monotonic()
        self.written += n
        return n

    def adopt(self) -> int:
        """Write the spools of this host's dead processes into the ledger (see adopt_orphans)."""
        if self.root is None:
            return 0
        # Before `start` (the proxy adopts before it serves) in this process: no child to wait for.
        n = self.child.adopt(self.root) if self.child is not None else adopt_orphans(self.engine, self.root)
        self.written += n
        return n

    def sweep_moves(self) -> None:
        if self.child is not None:
            self.child.sweep_moves()
        else:
            sweep_moves(self.engine)

    def _run(self) -> None:
        backoff = self.interval
        last_sync = last_adopt = time.monotonic()
        while not self._stop.wait(backoff):
            try:
                self.flush(paced=True)
                if time.monotonic() - last_adopt > self.ADOPT_SECONDS:
                    last_adopt = time.monotonic()
                    with self._waiting_on_database():
                        self.adopt()
                        self.sweep_moves()
            except (sa.exc.SQLAlchemyError, sqlite3.Error, OSError) as e:
                if not self.degraded:
                    log.error("ledger database unavailable, spooling to %s: %s", self.spool.dir, _short(e))
                self.degraded, self.last_error = True, _short(e)
                backoff = min(backoff * 2, 5.0)
                if time.monotonic() - last_sync > 1:
                    self.spool.sync()
                    last_sync = time.monotonic()
                continue
            except Exception as e:  # noqa: BLE001 - a dead writer thread would stop the ledger silently
                log.exception("ledger writer failed; events stay spooled and are retried")
                self.degraded, self.last_error = True, _short(e)
                backoff = min(backoff * 2, 5.0)
                continue
            if self.degraded:
                log.warning("ledger database is back; spooled events replayed")
            self.degraded, self.last_error, backoff = False, "", self.interval


def write_segment(engine: sa.Engine, path: Path, rejected: Path, pace: Callable[[], None] | None = None) -> tuple[int, list[str]]:
    """Write one segment's events once each; returns how many were new and the ids that landed.

    Events the database refuses for what they hold are kept in `rejected` (see write_rows).
    """
    rows = read_segment(path)
    n, refused = write_rows(engine, rows, path.name, pace)
    if refused:
        rejected.mkdir(exist_ok=True)
        with (rejected / path.name).open("ab") as f:
            f.writelines(orjson.dumps(row) + b"\n" for row in refused)
        log.error("%d events of %s kept aside in %s", len(refused), path.name, rejected)
    aside = {str(r.get("call_id")) for r in refused}
    return n, [str(r["call_id"]) for r in rows if str(r.get("call_id")) not in aside]


def write_rows(
    engine: sa.Engine, rows: list[dict[str, Any]], source: str, pace: Callable[[], None] | None = None
) -> tuple[int, list[dict[str, Any]]]:
    """Write events once each; returns how many were new and the events the ledger refused.

    A batch the database refuses for what a row holds is written event by event, and the
    events still refused are handed back, so they cannot hold up the ones behind them (the
    caller sets them aside). Anything else (the database is away) raises: retry it whole.
    Periods are assigned in the insert's transaction, so a month being closed meanwhile gets
    each event either in its snapshot or as a later adjustment. `pace`: see write_events.
    """
    for row in in_slices(rows, pace):
        fit_to_columns(row)  # in place
    try:
        return write_events(engine, rows, periods=charge_period, pace=pace), []
    except LedgerWriteError as e:
        log.error("ledger refused a batch from %s (%s); writing its events one by one", source, e.reason)
    n, refused = 0, []
    for row in rows:
        try:
            n += write_events(engine, [row], periods=charge_period)
        except LedgerWriteError as e:
            refused.append(row)
            log.error("event %s refused by the ledger: %s", row.get("call_id"), e.reason)
    return n, refused


def adopt_orphans(engine: sa.Engine, root: str | os.PathLike[str]) -> int:
    """Write into the ledger every spool folder under `root` whose process is gone, then delete
    it; returns how many events were new. Folders of live processes (their lock is held) are
    left alone, so any number of processes may call this at once, each folder going to one.
    """
    n = 0
    for folder in candidates(root):
        with orphaned(folder) as ours:
            if not ours:
                continue
            for path in segments(folder):
                n += write_segment(engine, path, folder / REJECTED)[0]
                path.unlink()
            if folder != Path(root):
                remove_if_spent(folder)
    if n:
        log.warning("wrote %d events left in the spool of a meterline process that is gone", n)
    return n


@dataclass(frozen=True)
class Recovered:
    events: int  # events read from the spool
    new: int  # of which were not in the ledger yet
    busy: list[Path]  # folders a live process holds: left alone


def recover_spool(engine: sa.Engine, spool: str | os.PathLike[str]) -> Recovered:
    """Write the events of a spool (a process folder, or a root of them, copied from a dead
    host, say) into the ledger, once each; the files are left as they are.
    """
    events = new = 0
    busy: list[Path] = []
    for folder in candidates(spool):
        with orphaned(folder) as free:
            if not free and (folder / LOCK).exists():
                busy.append(folder)
                continue
            for path in segments(folder):
                written, landed = write_segment(engine, path, folder / REJECTED)
                events, new = events + len(landed), new + written
    return Recovered(events, new, busy)


def _short(e: BaseException) -> str:
    return str(e).splitlines()[0][:200] if str(e) else type(e).__name__


__all__ = ["LedgerWriter", "Recovered", "adopt_orphans", "fit_to_columns", "recover_spool", "write_rows", "write_segment"]
