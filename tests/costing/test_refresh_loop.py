"""The refresh loop budgets and credits share: a ledger that is away is a warning per attempt,
the loop goes on, and it stops when asked."""

from __future__ import annotations

import logging
import threading
import time

import sqlalchemy as sa

from meterline.costing.refresh_loop import RefreshLoop


def test_a_ledger_away_is_a_warning_per_attempt_and_the_loop_reads_again_once_it_is_back(caplog):
    log = logging.getLogger("meterline.test-refresh")
    away = threading.Event()
    away.set()
    reads, afters = [], []

    def refresh():
        if away.is_set():
            raise sa.exc.OperationalError("SELECT 1", {}, Exception("connection refused\nmore detail"))
        reads.append(time.monotonic())

    loop = RefreshLoop("test-refresh", "test spend", refresh, 0.02, log=log, after=lambda: afters.append(1))
    with caplog.at_level(logging.WARNING, logger="meterline.test-refresh"):
        loop.start()  # the first read fails: a warning, not an exception
        deadline = time.monotonic() + 10
        while len(afters) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        away.clear()
        while len(reads) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        loop.stop()
    assert len(reads) >= 2  # it kept going, and reads again once the ledger is back
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0].startswith("test spend not read yet (ledger unavailable): ")
    assert any(m.startswith("test spend not refreshed (ledger unavailable): ") for m in messages[1:])
    assert all("\n" not in m for m in messages)  # one line each
    stopped = len(reads)
    time.sleep(0.1)
    assert len(reads) == stopped  # stopped means stopped
