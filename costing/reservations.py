"""What calls in flight hold on budgets and credit pools, from admission until they are recorded.

Budgets and credits admit a call alike: they reserve an estimate of its cost on each scope it
is charged to (a budget; a credit pool, in parts when it draws on two) and give the estimate
back when the call's event is recorded, whose actual cost then counts instead. A call that is
never recorded (an owner that died between admission and its record is a bug, but one that
must not hold a team's budget for the rest of the month) gives it back after MAX_AGE, at the
next refresh.

Not locked: the accountant that owns a Reservations calls it under its own lock, with the sums
it checks them against.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Generic, TypeVar

MAX_AGE = 15 * 60.0  # seconds; a call not settled by then is assumed gone

Scope = tuple[str, str]
N = TypeVar("N", Decimal, int)  # dollars (budgets) or pico-dollars (credit pools)


class Reservations(Generic[N]):
    """Parameters:
    zero: the amounts' zero (Decimal(0) or 0).
    clock: monotonic seconds; replaceable in tests.
    """

    def __init__(self, zero: N, *, clock: Callable[[], float] = time.monotonic):
        self._zero: N = zero
        self._clock = clock
        self._sums: dict[Scope, N] = {}
        self._calls: dict[str, tuple[Sequence[tuple[Scope, N]], float]] = {}

    def held(self, scope: Scope) -> N:
        """What the calls in flight hold on `scope`."""
        return self._sums.get(scope, self._zero)

    def __contains__(self, call_id: str) -> bool:
        return call_id in self._calls

    def hold(self, call_id: str, parts: Sequence[tuple[Scope, N]]) -> None:
        """Reserve each (scope, amount) of `parts` for the call."""
        sums = self._sums
        for s, amount in parts:
            sums[s] = sums.get(s, self._zero) + amount
        self._calls[call_id] = (parts, self._clock())

    def release(self, call_id: str) -> None:
        """Give back what the call holds (nothing if it holds nothing)."""
        held = self._calls.pop(call_id, None)
        if held is not None:
            self._give_back(held[0])

    def expire(self) -> None:
        """Give back what calls admitted over MAX_AGE ago still hold."""
        cutoff = self._clock() - MAX_AGE
        for cid in [cid for cid, (_, t0) in self._calls.items() if t0 < cutoff]:
            self._give_back(self._calls.pop(cid)[0])

    def _give_back(self, parts: Sequence[tuple[Scope, N]]) -> None:
        sums = self._sums
        for s, amount in parts:
            left = sums[s] - amount
            if left:
                sums[s] = left
            else:
                del sums[s]  # scopes no call holds leave no entry behind (keys come and go)


__all__ = ["MAX_AGE", "Reservations"]
