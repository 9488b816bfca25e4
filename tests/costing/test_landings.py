"""Which recorded calls the ledger holds: the writer's word, and the ledger asked when it cannot say."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from meterline.costing.landings import CHUNK, Landings, in_ledger
from tests.seed import event, seed

SQLITE = pytest.mark.parametrize("ledger_engine", ["sqlite"], indirect=True)


def writer():
    return SimpleNamespace(on_writing=[], on_written=[])


def told(w, ids):
    for f in w.on_writing:
        f()
    for f in w.on_written:
        f(ids)


@SQLITE
def test_with_no_writer_followed_the_ledger_is_asked(ledger_engine):
    seed(ledger_engine, [event("0.1", call_id="in")])
    with ledger_engine.connect() as conn:
        assert Landings(lambda: True).resolve(conn, lambda: ["in", "out"]) == {"in"}


@SQLITE
def test_a_followed_writer_s_word_is_taken_once_and_the_ledger_is_not_asked(ledger_engine):
    seed(ledger_engine, [event("0.1", call_id="in"), event("0.1", call_id="untold")])
    w, landings = writer(), Landings(lambda: True)
    landings.follow(w)
    told(w, ["in"])
    with ledger_engine.connect() as conn:
        assert landings.resolve(conn, lambda: ["untold"]) == {"in"}
        assert landings.resolve(conn, lambda: ["untold"]) == set()


@SQLITE
def test_while_a_commit_is_under_way_the_ledger_is_asked_about_what_is_pending(ledger_engine):
    seed(ledger_engine, [event("0.1", call_id="committed")])
    w, landings = writer(), Landings(lambda: True)
    landings.follow(w)
    w.on_writing[0]()  # committed, not told yet
    with ledger_engine.connect() as conn:
        assert landings.resolve(conn, lambda: ["committed", "later"]) == {"committed"}
        w.on_written[0](["committed"])
        assert landings.resolve(conn, lambda: ["later"]) == {
            "committed"
        }  # told now: forgotten twice is harmless
        assert landings.resolve(conn, lambda: ["later"]) == set()


@SQLITE
def test_a_failed_commit_leaves_nothing_under_way(ledger_engine):
    seed(ledger_engine, [event("0.1", call_id="untold")])
    w, landings = writer(), Landings(lambda: True)
    landings.follow(w)
    told(w, [])
    with ledger_engine.connect() as conn:
        assert landings.resolve(conn, lambda: ["untold"]) == set()


@SQLITE
def test_ids_are_not_kept_when_nothing_is_counted(ledger_engine):
    w, landings = writer(), Landings(lambda: False)
    landings.follow(w)
    told(w, ["c"])
    with ledger_engine.connect() as conn:
        assert landings.resolve(conn, list) == set()


@pytest.mark.parametrize("ledger_engine", ["sqlite", "postgres"], indirect=True)
def test_the_ledger_is_asked_in_chunks_and_answers_exactly_the_ids_it_holds(ledger_engine):
    held = [f"held-{i:04d}" for i in range(CHUNK + 7)]  # more than one chunk
    seed(ledger_engine, [event("0.1", call_id=c) for c in held])
    asked = [c for pair in zip(held, (f"gone-{i:04d}" for i in range(len(held))), strict=True) for c in pair]
    with ledger_engine.connect() as conn:
        assert in_ledger(conn, asked) == set(held)
        assert in_ledger(conn, ["gone", 'quo"te', "back\\slash"]) == set()
        assert in_ledger(conn, []) == set()
