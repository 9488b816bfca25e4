"""Moves spooled events into the database in batches, in order, once each."""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, select

from .ledger import PeriodSnapshot, write_events
from .spool import Spool, read_segment

log = logging.getLogger("meterline.ledger")


def period_of(ts: datetime) -> str:
    return f"{ts.year:04d}-{ts.month:02d}"


def next_period(period: str) -> str:
    y, m = int(period[:4]), int(period[5:])
    return f"{y + m // 12:04d}-{m % 12 + 1:02d}"


def charge_period(ts: datetime, closed: set[str]) -> tuple[str, bool]:
    """The month a call is billed in: its own, or the first open one after it was closed."""
    period = period_of(ts)
    late = period in closed
    while period in closed:
        period = next_period(period)
    return period, late


def closed_periods(engine: sa.Engine) -> set[str]:
    with Session(engine) as s:
        return set(s.exec(select(PeriodSnapshot.period)).all())


class LedgerWriter:
    """A background thread that flushes the spool to the database every `interval` seconds.

    While the database is unreachable the segments stay on disk and `degraded` is True; they
    are replayed in order when it is back. A database that accepts connections but does not
    answer (a hung host, a network that drops packets) raises nothing for a while: `stalled`
    says so once a flush has gone `stall_seconds` without committing a segment.
    """

    def __init__(self, engine: sa.Engine, spool: Spool, interval: float = 0.2):
        self.engine = engine
        self.spool = spool
        self.interval = interval
        self.degraded = False
        self.last_error = ""
        self.written = 0
        self.stall_seconds = max(5.0, 20 * interval)
        self._progress: float | None = None  # while flushing: when the last segment committed
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="meterline-ledger", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, flush: bool = True) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        if flush:
            try:
                self.flush()
            except sa.exc.SQLAlchemyError as e:
                log.warning("ledger not reachable at shutdown; %s stays spooled: %s", self.spool.dir, e)

    @property
    def stalled(self) -> bool:
        progress = self._progress
        return progress is not None and time.monotonic() - progress > self.stall_seconds

    def flush(self) -> int:
        """Write everything spooled so far. Raises if the database refuses."""
        with self._flush_lock:
            self._progress = time.monotonic()
            try:
                return self._flush()
            finally:
                self._progress = None

    def _flush(self) -> int:
        segments = self.spool.seal()
        if not segments:
            return 0
        n = 0
        for path in segments:
            # Periods are assigned in the insert's transaction, so a month being closed
            # meanwhile gets each event either in its snapshot or as a later adjustment.
            n += write_events(self.engine, read_segment(path), periods=charge_period)
            path.unlink()
            self._progress = time.monotonic()
        self.written += n
        return n

    def _run(self) -> None:
        backoff = self.interval
        last_sync = time.monotonic()
        while not self._stop.wait(backoff):
            try:
                self.flush()
            except (sa.exc.SQLAlchemyError, OSError) as e:
                if not self.degraded:
                    log.error("ledger database unavailable, spooling to %s: %s", self.spool.dir, _short(e))
                self.degraded, self.last_error = True, _short(e)
                backoff = min(backoff * 2, 5.0)
                if time.monotonic() - last_sync > 1:
                    self.spool.sync()
                    last_sync = time.monotonic()
                continue
            if self.degraded:
                log.warning("ledger database is back; spooled events replayed")
            self.degraded, self.last_error, backoff = False, "", self.interval


def _short(e: BaseException) -> str:
    return str(e).splitlines()[0][:200] if str(e) else type(e).__name__


__all__: list[Any] = ["LedgerWriter", "charge_period", "period_of", "next_period", "closed_periods"]
