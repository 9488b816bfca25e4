"""The ledger writer's child process: the same writes as the thread, from another process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import sqlalchemy as sa

from meterline.costing import create_engine, create_schema
from meterline.costing.ingest import LedgerWriter
from meterline.costing.writer_process import LedgerUnreachable, WriterProcess
from tests.seed import spooled


def counts(engine) -> tuple[int, int]:
    with engine.connect() as conn:
        return (
            conn.execute(sa.text("SELECT count(*) FROM events")).scalar(),
            conn.execute(sa.text("SELECT coalesce(sum(requests), 0) FROM rollups_hourly")).scalar(),
        )


def started(engine, spool) -> LedgerWriter:
    writer = LedgerWriter(engine, spool, interval=3600, mode="process")  # flushed by hand below
    writer.start()
    assert writer.child is not None
    return writer


def test_a_process_writer_lands_segments_in_the_ledger_and_tells_the_observers(engine, spool):
    writer = started(engine, spool)
    landed: list[str] = []
    writer.on_written.append(landed.extend)
    try:
        spool.append(spooled(call_id="a"))
        spool.append(spooled(call_id="b"))
        assert writer.flush() == 2
        spool.append(spooled(call_id="c"))
        assert writer.flush() == 1
        assert landed == ["a", "b", "c"]
        assert counts(engine) == (3, 3)
        assert not list(spool.dir.glob("*.jsonl"))[1:]  # only the active segment is left
    finally:
        writer.stop()


def test_a_killed_child_is_replaced_and_its_segment_written_once(engine, spool):
    writer = started(engine, spool)
    try:
        spool.append(spooled(call_id="a"))
        assert writer.flush() == 1
        first = writer.child.pid
        os.kill(first, signal.SIGKILL)
        spool.append(spooled(call_id="b"))
        assert writer.flush() == 1
        assert writer.child.pid != first and writer.child.restarts == 1
        assert counts(engine) == (2, 2)
    finally:
        writer.stop()


def test_a_segment_written_by_a_child_that_died_before_answering_is_counted_once(engine, spool):
    # The child committed, then died before the parent heard it: the parent writes it again.
    spool.append(spooled(call_id="a"))
    spool.append(spooled(call_id="b"))
    (path,) = spool.seal()
    child = WriterProcess(engine.url.render_as_string(hide_password=False))
    try:
        assert child.write_segment(path, spool.dir / "rejected") == (2, ["a", "b"])
        assert child.write_segment(path, spool.dir / "rejected") == (0, ["a", "b"])
    finally:
        child.close()
    assert counts(engine) == (2, 2)


def test_an_unreachable_database_is_an_sqlalchemy_error_and_the_writer_degrades(tmp_path, spool):
    target = tmp_path / "gone" / "ledger.db"
    target.parent.mkdir()
    engine = create_engine(f"sqlite:///{target}")
    create_schema(engine)
    writer = LedgerWriter(engine, spool, interval=0.05, mode="process")
    writer.start()
    try:
        spool.append(spooled(call_id="a"))
        (tmp_path / "gone").rename(tmp_path / "moved")  # the database file is not where the URL says
        deadline = time.monotonic() + 30
        while not writer.degraded and time.monotonic() < deadline:
            time.sleep(0.05)
        assert writer.degraded and writer.last_error
        with pytest.raises(LedgerUnreachable):
            writer.flush()
        assert list(spool.dir.glob("*.jsonl"))  # still spooled
        (tmp_path / "moved").rename(tmp_path / "gone")
        deadline = time.monotonic() + 30
        while writer.degraded and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not writer.degraded
    finally:
        writer.stop()
        engine.dispose()
    assert counts(create_engine(f"sqlite:///{target}")) == (1, 1)


def test_the_child_exits_when_its_pipe_closes_and_when_its_parent_dies(tmp_path):
    child = WriterProcess(f"sqlite:///{tmp_path / 'ledger.db'}")
    child.start()
    proc = child._proc
    child.close(timeout=30)
    assert proc.returncode == 0

    # A parent that is SIGKILLed: its child must not outlive it.
    code = (
        "import sys, time; from meterline.costing.writer_process import WriterProcess; "
        f"w = WriterProcess('sqlite:///{tmp_path / 'ledger.db'}'); w.start(); print(w.pid, flush=True); time.sleep(600)"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    pid = int(parent.stdout.readline())
    parent.stdout.close()
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 30
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False
