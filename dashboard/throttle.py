"""A throttle on password sign-in: per user name and per client, failures back off.

The first `FREE` failures of a user name (or from one client) cost nothing; each one after
that locks the name (or client) out for twice as long as the one before, from 2 s up to
`MAX_LOCK`. While locked, no password is checked at all, the right one included, so guessing
runs at the throttle's pace whatever the attacker's: 200 guesses at one user take days, not
seconds. A success clears the user's and the client's failures. The lock is capped, so a
stranger who locks a name out keeps it out for minutes, not for good.

One process's memory (the dashboard runs as one process); a restart forgets it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

FREE = 5  # failures before any wait: typos happen
FIRST_LOCK = 2.0  # seconds, after the first failure past FREE
MAX_LOCK = 15 * 60.0  # seconds
MAX_TRACKED = 10_000  # names and clients remembered; the oldest are forgotten first


@dataclass
class _Record:
    failures: int = 0
    locked_until: float = 0.0


def _now() -> float:
    return time.monotonic()


class Throttle:
    """Parameters:
    clock: seconds, monotonic (replaceable in tests, which then need no sleeps); by default
        the module's `_now`, looked up at each call."""

    def __init__(self, clock: Callable[[], float] | None = None):
        self.clock: Callable[[], float] = clock or (lambda: _now())
        self._records: dict[tuple[str, str], _Record] = {}
        self._lock = threading.Lock()

    def wait(self, user: str, client: str) -> float:
        """Seconds until this user may try again from this client (0: now)."""
        now = self.clock()
        with self._lock:
            until = max(self._records.get(k, _Record()).locked_until for k in (("user", user), ("client", client)))
        return max(0.0, until - now)

    def failed(self, user: str, client: str) -> None:
        now = self.clock()
        with self._lock:
            for k in (("user", user), ("client", client)):
                r = self._records.pop(k, None) or _Record()
                r.failures += 1
                if r.failures > FREE:
                    r.locked_until = now + min(MAX_LOCK, FIRST_LOCK * 2 ** (r.failures - FREE - 1))
                self._records[k] = r  # re-inserted: the dict's order is oldest first
            while len(self._records) > MAX_TRACKED:
                del self._records[next(iter(self._records))]

    def succeeded(self, user: str, client: str) -> None:
        with self._lock:
            for k in (("user", user), ("client", client)):
                self._records.pop(k, None)


__all__ = ["FREE", "MAX_LOCK", "Throttle"]
