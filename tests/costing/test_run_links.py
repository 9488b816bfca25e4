"""The memory that links agent runs (costing/run_links.py) and the ledger that completes it
(costing/run_ledger.py): right links, and none where the clues cannot tell two runs apart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from meterline.costing.run_links import (
    Asked,
    Produced,
    Producer,
    RunIndex,
    arguments_clue,
    same_tool,
    tool_call_clue,
)
from tests.seed import event, seed


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def hexed(name: str, width: int) -> str:
    return name.encode().hex().ljust(width, "0")[:width]


def producer(call_id: str, trace: str, at: float = 1000.0) -> Producer:
    """A producer named for reading: ids are hex as the proxy makes them."""
    return Producer(hexed(call_id, 16), hexed(trace, 32), "nlp", at)


def test_arguments_digest_is_the_same_for_the_llm_text_and_the_mcp_object():
    assert arguments_clue('{"b": 1, "a": [1, 2]}') == arguments_clue({"a": [1, 2], "b": 1})
    assert arguments_clue("{}") == arguments_clue({}) == arguments_clue(None)
    assert arguments_clue('{"a": 1}') != arguments_clue('{"a": 2}')
    assert arguments_clue("not json") is None


def test_a_framework_prefixed_tool_name_matches_the_mcp_tool():
    assert same_tool("search", "search") and same_tool("github_search", "search") and same_tool("gh__search", "search")
    assert not same_tool("research", "search") and not same_tool("search", "github_search")


def test_a_continuation_links_to_the_latest_call_of_its_run():
    runs = RunIndex(clock=Clock())
    runs.add("nlp", producer("turn1", "t1", 1), Produced((tool_call_clue("a"),)))
    runs.add("nlp", producer("turn2", "t1", 2), Produced((tool_call_clue("b"),)))
    found = runs.continued("nlp", Asked((tool_call_clue("a"), tool_call_clue("b"))))
    assert found is not None and found.producer.call_id == hexed("turn2", 16) and found.link == "continuation"
    assert runs.continued("web", Asked((tool_call_clue("b"),))) is None  # another team's clue


def test_a_clue_two_runs_produced_links_neither():
    runs = RunIndex(clock=Clock())
    runs.add("nlp", producer("x", "t1"), Produced((tool_call_clue("call_0"),)))
    runs.add("nlp", producer("y", "t2"), Produced((tool_call_clue("call_0"),)))
    assert runs.continued("nlp", Asked((tool_call_clue("call_0"),))) is None
    assert runs.ambiguous == 1


def test_clues_of_two_runs_in_one_request_link_nothing():
    runs = RunIndex(clock=Clock())
    runs.add("nlp", producer("x", "t1"), Produced((tool_call_clue("a"),)))
    runs.add("nlp", producer("y", "t2"), Produced((tool_call_clue("b"),)))
    assert runs.continued("nlp", Asked((tool_call_clue("a"), tool_call_clue("b")))) is None


def test_clues_expire_after_the_window_and_past_the_capacity():
    clock = Clock()
    runs = RunIndex(capacity=4, window=60, clock=clock)
    runs.add("nlp", producer("x", "t1", clock.now), Produced((tool_call_clue("a"),)))
    clock.now += 61
    assert runs.continued("nlp", Asked((tool_call_clue("a"),))) is None
    for i in range(10):
        runs.add("nlp", producer(f"y{i}", "t2", clock.now), Produced((tool_call_clue(f"b{i}"),)))
        assert len(runs) <= 4
    assert runs.continued("nlp", Asked((tool_call_clue("b0"),))) is None  # pushed out
    assert runs.continued("nlp", Asked((tool_call_clue("b9"),))) is not None


def test_each_ask_for_a_tool_answers_one_tool_call():
    runs = RunIndex(clock=Clock())
    args = arguments_clue({"q": "paris"})
    assert args is not None
    runs.add("nlp", producer("llm", "t1"), Produced((args, args), ("weather", "weather")))
    asked = Asked((args,), "weather")
    got = [runs.tool_request("nlp", asked), runs.tool_request("nlp", asked)]
    assert [f and f.producer.call_id for f in got] == [hexed("llm", 16)] * 2
    assert runs.tool_request("nlp", asked) is None  # asked twice, called a third time
    assert runs.tool_request("nlp", Asked((args,), "other_tool")) is None


def row(call_id: str, trace: str, ts: datetime, **fields):
    return event("0.01", ts=ts, call_id=call_id, trace_id=trace, key_team="nlp", **fields)


def linked(engine) -> dict[str, tuple[str, str, str]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT call_id, trace_id, parent_call_id, link FROM events")).all()
    return {r.call_id: (r.trace_id, r.parent_call_id, r.link) for r in rows}


def test_the_ledger_links_a_continuation_landing_before_its_producer_and_moves_its_subtree(ledger_engine):
    t0 = datetime.now(UTC)
    clue = tool_call_clue("call_abc")
    # Replica B served the continuation (and, in its memory, a sub-call of it) first.
    cont = row("c" * 16, "b" * 32, t0 + timedelta(seconds=2), run_asked={"clues": [clue], "tool": "", "kind": "continuation"})
    child = row("d" * 16, "b" * 32, t0 + timedelta(seconds=3), parent_call_id="c" * 16, link="continuation")
    seed(ledger_engine, [cont, child])
    assert linked(ledger_engine)["c" * 16] == ("b" * 32, "", "")
    # Replica A's producer lands later.
    seed(ledger_engine, [row("a" * 16, "a" * 32, t0, run_produced=[[clue, ""]])])
    # And a call of B's old trace, written after the move, follows it.
    seed(ledger_engine, [row("e" * 16, "b" * 32, t0 + timedelta(seconds=4), parent_call_id="d" * 16, link="continuation")])

    got = linked(ledger_engine)
    assert got["c" * 16] == ("a" * 32, "a" * 16, "continuation")
    assert got["d" * 16][0] == got["e" * 16][0] == "a" * 32


def test_the_ledger_leaves_a_call_whose_clue_two_runs_produced_a_root(ledger_engine):
    t0 = datetime.now(UTC)
    clue = tool_call_clue("call_0")
    seed(ledger_engine, [row("a" * 16, "a" * 32, t0, run_produced=[[clue, ""]]), row("b" * 16, "b" * 32, t0, run_produced=[[clue, ""]])])
    seed(ledger_engine, [row("c" * 16, "c" * 32, t0 + timedelta(seconds=1), run_asked={"clues": [clue], "tool": "", "kind": "continuation"})])
    assert linked(ledger_engine)["c" * 16] == ("c" * 32, "", "")


def test_the_ledger_matches_a_tool_call_by_tool_and_arguments(ledger_engine):
    t0 = datetime.now(UTC)
    args = arguments_clue({"q": 1})
    seed(ledger_engine, [row("a" * 16, "a" * 32, t0, run_produced=[[args, "lookup"]])])
    wrong = row("b" * 16, "b" * 32, t0 + timedelta(seconds=1), kind="mcp", run_asked={"clues": [args], "tool": "other", "kind": "tool_request"})
    right = row("c" * 16, "c" * 32, t0 + timedelta(seconds=1), kind="mcp", run_asked={"clues": [args], "tool": "lookup", "kind": "tool_request"})
    seed(ledger_engine, [wrong, right])
    got = linked(ledger_engine)
    assert got["b" * 16] == ("b" * 32, "", "")
    assert got["c" * 16] == ("a" * 32, "a" * 16, "tool_request")


def test_a_parent_span_of_another_trace_is_no_parent(ledger_engine):
    # Call ids are not secret: naming one as the parent span of a trace of one's own links nothing.
    t0 = datetime.now(UTC)
    seed(ledger_engine, [row("a" * 16, "a" * 32, t0)])
    seed(ledger_engine, [row("b" * 16, "f" * 32, t0, parent_span_id="a" * 16), row("c" * 16, "a" * 32, t0, parent_span_id="a" * 16)])
    got = linked(ledger_engine)
    assert got["b" * 16] == ("f" * 32, "", "")
    assert got["c" * 16] == ("a" * 32, "a" * 16, "traceparent")
