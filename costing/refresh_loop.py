"""A refresh from the ledger, now and then every few seconds, on a thread of its own.

Budgets and credit balances both keep a view of the ledger that each replica re-reads
(`budgets.refresh_seconds`). The loop is theirs alike: a first read before serving, then one
per interval until stopped. A database that is away is a warning per attempt, never an
exception: the proxy serves from its spool meanwhile, and the next attempt reads again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import sqlalchemy as sa


class RefreshLoop:
    """Parameters:
    name: the thread's name.
    what: what is read, in the warnings ("budget spend").
    refresh: one read; a SQLAlchemyError means the ledger is away.
    seconds: the interval between reads.
    log: where the warnings go (the owner's logger).
    after: run after each read in the loop, whether it worked or not (alerts to send, say).
    """

    def __init__(
        self, name: str, what: str, refresh: Callable[[], None], seconds: float, *,
        log: logging.Logger, after: Callable[[], None] | None = None,
    ):  # fmt: skip
        self.log = log
        self.what = what
        self.refresh = refresh
        self.seconds = seconds
        self.after = after
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        """The first read, here, then the thread."""
        try:
            self.refresh()
        except sa.exc.SQLAlchemyError as e:
            self.log.warning("%s not read yet (ledger unavailable): %s", self.what, _first_line(e))
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.seconds):
            try:
                self.refresh()
            except sa.exc.SQLAlchemyError as e:
                self.log.warning("%s not refreshed (ledger unavailable): %s", self.what, _first_line(e))
            if self.after is not None:
                self.after()


def _first_line(e: BaseException) -> str:
    return str(e).splitlines()[0] if str(e) else type(e).__name__


__all__ = ["RefreshLoop"]
