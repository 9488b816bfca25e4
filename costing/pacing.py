"""Pacing a live flush: its CPU in short slices with pauses between, not in one burst.

On a small host the ledger writer shares the cores with the serving process, and a burst of
work there delays the calls being served, whatever its priority. Measured on a 2-core VM at
concurrency 1 (bench/RESULTS.md, 2026-12-04): a neighbour busy 5 ms in every 200 added 1.1 ms
to a bare pass-through's p99, and one busy 0.5 ms in every 20 (the same CPU) nothing
measurable. A flush of 200 events is about 5 ms of CPU, so the writer takes it in slices.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

PACED_ROWS = 64
"""How many rows a paced loop handles between two calls of its pace: each takes a few µs."""


def in_slices(rows: list[T], pace: Callable[[], None] | None) -> Iterable[T]:
    """`rows` as they are, or with `pace` called after every PACED_ROWS of them."""
    return rows if pace is None else _paced(rows, pace)


def _paced(rows: list[T], pace: Callable[[], None]) -> Iterator[T]:
    for i, row in enumerate(rows, 1):
        yield row
        if i % PACED_ROWS == 0:
            pace()


class Pace:
    """Called between steps of a write: pauses once SLICE_SECONDS of the write have run since
    the last pause, until the write has taken `budget_seconds` in all. From then on it runs
    flat out, so a writer with more to do than its pauses allow never falls behind.

    The clock is wall time: a step the host delays counts as work done, and the pauses never
    add more than `budget_seconds` to a flush.
    """

    SLICE_SECONDS = 0.0005
    PAUSE_SECONDS = 0.002

    def __init__(self, budget_seconds: float):
        self.budget = budget_seconds
        self._start = self._mark = time.perf_counter()

    def __call__(self) -> None:
        now = time.perf_counter()
        if now - self._mark < self.SLICE_SECONDS or now - self._start >= self.budget:
            return
        time.sleep(self.PAUSE_SECONDS)
        self._mark = time.perf_counter()


__all__ = ["PACED_ROWS", "Pace", "in_slices"]
