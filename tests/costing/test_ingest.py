"""The ledger writer: no event in a spooled batch can hold up the ones behind it."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from meterline.costing import CostingError, LedgerWriteError, create_engine, write_events
from meterline.costing.attribution import MAX_TAGS_CHARS, clean, parse_tags
from meterline.costing.ingest import LedgerWriter
from tests.seed import event, spooled


def stored(engine, column: str) -> dict[str, object]:
    with engine.connect() as conn:
        return dict(conn.execute(sa.text(f"SELECT call_id, {column} FROM events")).all())


def test_values_too_big_for_their_columns_are_stored_cut_to_fit(engine, spool):
    spool.append(spooled(call_id="a" * 16, model="gpt-4.1-" + "x" * 400, input_tokens=2**40, output_tokens=-5))
    spool.append(spooled(call_id="b" * 16))

    assert LedgerWriter(engine, spool).flush() == 2

    assert stored(engine, "model")["a" * 16] == ("gpt-4.1-" + "x" * 400)[:256]
    assert stored(engine, "input_tokens")["a" * 16] == 2**31 - 1
    assert stored(engine, "output_tokens")["a" * 16] == 0


def test_an_event_the_database_refuses_is_kept_aside_and_the_rest_of_its_batch_lands(engine, spool, caplog):
    good = [spooled() for _ in range(3)]
    bad = spooled(call_id="c" * 16)
    del bad["kind"]
    for row in (good[0], bad, *good[1:]):
        spool.append(row)

    assert LedgerWriter(engine, spool).flush() == 3

    assert set(stored(engine, "kind")) == {r["call_id"] for r in good}
    kept = list((spool.dir / "rejected").glob("*.jsonl"))
    assert len(kept) == 1 and ("c" * 16) in kept[0].read_text()
    assert spool.pending() == 0
    assert "kept aside" in caplog.text


@pytest.mark.parametrize("refused", [{"kind": None}, {"kind": KeyError}], ids=["the database", "before it"])
def test_a_batch_refused_for_what_it_holds_raises_ledger_write_error_and_writes_nothing(engine, refused):
    bad = event("0.01", call_id="d" * 16)
    if refused["kind"] is KeyError:
        del bad["kind"]
    else:
        bad.update(refused)  # NOT NULL
    with pytest.raises(LedgerWriteError, match="the ledger refused 2 events") as caught:
        write_events(engine, [event("0.01", call_id="e" * 16), bad])
    assert isinstance(caught.value, CostingError) and caught.value.__cause__ is not None
    assert stored(engine, "kind") == {}
    assert write_events(engine, [event("0.01", call_id="e" * 16)]) == 1  # the good row alone lands


def test_a_database_that_cannot_be_reached_is_not_a_refusal(tmp_path):
    away = create_engine(f"sqlite:///{tmp_path / 'no' / 'such' / 'ledger.db'}")
    with pytest.raises(sa.exc.OperationalError):
        write_events(away, [event("0.01")])
    away.dispose()


def test_tags_from_a_header_fit_the_ledger_column_whole_pairs_only():
    header = ",".join(f"key{i}={'v' * 200}" for i in range(40))
    tags = parse_tags(header)
    assert 0 < len(tags) <= MAX_TAGS_CHARS
    assert all(len(p.split("=", 1)[1]) == 128 for p in tags.split(","))


def test_header_values_lose_control_and_invisible_characters():
    assert clean("re\u202esearch\u200b\x00\x1b[31m\x85") == "research[31m"
    assert clean("x" * 1000) == "x" * 128


def test_a_database_that_hangs_between_flushes_shows_as_stalled(engine, spool, monkeypatch):
    # The writer also adopts dead processes' spools and re-applies run moves between flushes;
    # a database that stops answering there must show on /healthz as it does during a flush.
    import threading
    import time

    from meterline.costing import ingest

    answer = threading.Event()
    monkeypatch.setattr(ingest, "sweep_moves", lambda engine: answer.wait(30))
    monkeypatch.setattr(LedgerWriter, "ADOPT_SECONDS", 0.0)
    writer = LedgerWriter(engine, spool, interval=0.05)
    writer.stall_seconds = 0.3
    writer.start()
    try:
        deadline = time.monotonic() + 10
        while not writer.stalled and time.monotonic() < deadline:
            time.sleep(0.05)
        assert writer.stalled
    finally:
        answer.set()
        writer.stop(flush=False)
    assert not writer.stalled


def test_a_disk_that_takes_part_of_an_event_and_cannot_cut_it_off_loses_no_event(engine, spool, monkeypatch):
    import os

    from meterline.costing import spool as spool_module

    real_write, fd = os.write, spool._fd

    def half(f, data):  # the disk takes half of what the spool writes, then refuses
        return real_write(f, data[: len(data) // 2]) if f == fd else real_write(f, data)

    def refuse(f, size):
        raise OSError(28, "No space left on device")

    first, second = spooled(call_id="1" * 16), spooled(call_id="2" * 16)
    with monkeypatch.context() as m:
        m.setattr(spool_module.os, "write", half)
        m.setattr(spool_module.os, "ftruncate", refuse)
        spool.append(first)  # half of it stays in the segment, and the event waits in memory
    assert not spool.healthy and "not writable" in spool.error
    spool.append(second)  # behind it, in order
    assert spool.pending() == 2

    assert LedgerWriter(engine, spool).flush() == 2  # the torn half is skipped on its own line
    assert spool.healthy
    assert set(stored(engine, "call_id")) == {"1" * 16, "2" * 16}
