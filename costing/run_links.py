"""Agent runs from the traffic itself: what LLM responses produce, and the later calls that use it.

An LLM response hands its client things only that response could have made: the ids of the
tool calls it asks for, its own Responses API id, and the tool calls themselves (a name and
arguments). A later request that carries one of those back continues that response's run:
chat `messages` with the assistant's `tool_calls` and the `tool` results naming their
`tool_call_id`; a Responses API `previous_response_id` or `function_call_output`; an MCP
`tools/call` of the same tool with the same arguments. These are *clues*, written as short
strings (`c:` a tool call id, `r:` a response id, `a:` a digest of canonical arguments), and
`RunIndex` remembers, per team, which call produced each.

Linking is within the team whose key made both calls: a clue copied from another team's
traffic links nothing. A clue two runs produced (an upstream that mints `call_0` for
everyone, two runs asking the same tool with the same arguments) is ambiguous and links
nothing: a call left a root of its own is recoverable; one put in the wrong run is not.

What the memory of one process cannot see (another replica or worker served the producer)
is completed in the ledger (run_ledger.py), from the same clues.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any, NamedTuple

import orjson

# How a call joined its run: the events export's `link` column.
TRACEPARENT = "traceparent"
HEADER = "header"
CONTINUATION = "continuation"
TOOL_REQUEST = "tool_request"

MAX_CLUES = 32  # per call: what one response produces, or one request refers to
MAX_CLUE_CHARS = 80  # a provider's id past this is not one we keep
MAX_ARGS_BYTES = 64 * 1024  # tool-call arguments digested; longer ones give no `a:` clue
DEFAULT_WINDOW = 3600.0  # seconds a clue links after the response that produced it
DEFAULT_CAPACITY = 100_000  # clues remembered per process: 22 MB at most (tracemalloc)


def tool_call_clue(tool_call_id: str) -> str:
    return "c:" + tool_call_id


def response_clue(response_id: str) -> str:
    return "r:" + response_id


def arguments_clue(arguments: Any) -> str | None:
    """`a:` + a digest of the arguments in canonical form (sorted keys, no spaces), so that
    the JSON text an LLM wrote and the object an MCP client sends agree. Arguments given as
    JSON text are parsed first; None when they are not JSON, or too large to be worth it."""
    if isinstance(arguments, str | bytes):
        if len(arguments) > MAX_ARGS_BYTES:
            return None
        try:
            arguments = orjson.loads(arguments) if arguments else {}
        except orjson.JSONDecodeError:
            return None
    if arguments is None:
        arguments = {}
    try:
        canonical = orjson.dumps(arguments, option=orjson.OPT_SORT_KEYS)
    except (TypeError, orjson.JSONEncodeError):
        return None
    if len(canonical) > MAX_ARGS_BYTES:
        return None
    return "a:" + hashlib.blake2b(canonical, digest_size=12).hexdigest()


def usable(clue: object) -> bool:
    return isinstance(clue, str) and 2 < len(clue) <= MAX_CLUE_CHARS


def same_tool(asked: str, called: str) -> bool:
    """An MCP tool `called` is the one an LLM `asked` for: the same name, or the name an agent
    framework gave it by prefixing the server's (`github_search`, `github__search`, `github.search`)."""
    if asked == called:
        return True
    return asked.endswith(called) and asked[-len(called) - 1] in "_.-/:"


class Produced(NamedTuple):
    """What one LLM response produced: its clues, and for each tool call its name (for `a:`
    clues, matched to an MCP tools/call of that tool)."""

    clues: tuple[str, ...]
    tools: tuple[str, ...] = ()  # the tool name of each `a:` clue, in order


class Asked(NamedTuple):
    """What a request refers to: clues of the response it continues (the latest turn's), or,
    for an MCP tools/call, the `a:` clue of its arguments and the tool's name."""

    clues: tuple[str, ...]
    tool: str = ""
    kind: str = ""  # continuation | tool_request, once the proxy found no producer in its memory


NO_PRODUCE = Produced(())


class Producer:
    """A recorded call that produced clues: where it sits, and who pays for its run.

    Kept small (ids as 24 bytes, not 48 characters): the index holds one per response."""

    __slots__ = ("_ids", "at", "payer_team")

    def __init__(self, call_id: str, trace_id: str, payer_team: str, at: float):
        self._ids = bytes.fromhex(call_id + trace_id) if trace_id else b""
        self.payer_team = payer_team
        self.at = at  # monotonic seconds when it was recorded

    @property
    def call_id(self) -> str:
        return self._ids[:8].hex()

    @property
    def trace_id(self) -> str:
        return self._ids[8:].hex()


class Found(NamedTuple):
    producer: Producer
    link: str


class RunIndex:
    """The clues this process has seen, per team, bounded in count and in age.

    Two generations of a plain dict: when the young one holds half the capacity it becomes the
    old one, and the old one is dropped. Every step is O(1), and at most `capacity` clues are
    kept (an OrderedDict's links would double the memory per clue).

    Parameters:
    capacity: clues kept in all.
    window: seconds a clue links after its response was recorded.
    clock: monotonic seconds (tests move it).
    """

    def __init__(self, capacity: int = DEFAULT_CAPACITY, window: float = DEFAULT_WINDOW, clock: Any = time.monotonic):
        self.capacity = capacity
        self.window = window
        self.clock = clock
        # hash((team, clue)) -> its producer; for an arguments clue, [producer, tool names asked...].
        # A 64-bit hash as the key: a collision needs ~4 billion clues, far past the capacity.
        self._young: dict[int, Any] = {}
        self._old: dict[int, Any] = {}
        self.ambiguous = 0  # lookups that found a clue two runs share (a metric)

    def __len__(self) -> int:
        return len(self._young) + len(self._old)

    def add(self, team: str, producer: Producer, produced: Produced) -> None:
        """Remember what `producer` (a call of a key of `team`) produced."""
        if not producer.trace_id:
            return
        tools = iter(produced.tools)
        for clue in produced.clues[:MAX_CLUES]:
            slot = hash((team, clue))
            name = next(tools, "") if clue.startswith("a:") else None
            known = self._get(slot)
            p = known[0] if type(known) is list else known
            if p is not None and self._live(p) and p.trace_id != producer.trace_id:
                entry: Any = _Mark(producer.at)  # two runs made it: it links neither, for a window
            elif name is not None:
                entry = known if type(known) is list and known[0] is producer else [producer]
                entry.append(name)
            else:
                entry = producer  # new, or the latest of the same run (a loop asking again)
            self._old.pop(slot, None)
            self._young[slot] = entry
        if len(self._young) * 2 >= self.capacity:
            self._old, self._young = self._young, {}

    def continued(self, team: str, asked: Asked) -> Found | None:
        """The call a request continues: the latest producer of its clues, if one run made them."""
        found: Producer | None = None
        for clue in asked.clues[:MAX_CLUES]:
            entry = self._get(hash((team, clue)))
            p = entry[0] if type(entry) is list else entry
            if p is None or not self._live(p):
                continue
            if type(p) is _Mark or (found is not None and p.trace_id != found.trace_id):
                self.ambiguous += 1
                return None  # a shared clue, or clues of two runs in one request: no guess
            if found is None or p.at > found.at:
                found = p
        return Found(found, CONTINUATION) if found is not None else None

    def tool_request(self, team: str, asked: Asked) -> Found | None:
        """The LLM call that asked for the tool an MCP tools/call runs, with these arguments.
        Each ask answers one tools/call: a second call of the same tool and arguments is
        matched to a second ask, not to the first again."""
        entry = self._get(hash((team, asked.clues[0]))) if asked.clues else None
        if type(entry) is _Mark and self._live(entry):
            self.ambiguous += 1
            return None
        if type(entry) is not list or not self._live(entry[0]):
            return None
        for i in range(1, len(entry)):
            if same_tool(entry[i], asked.tool):
                del entry[i]
                return Found(entry[0], TOOL_REQUEST)
        return None

    def _get(self, slot: int) -> Any:
        entry = self._young.get(slot)
        return entry if entry is not None else self._old.get(slot)

    def _live(self, p: Any) -> bool:
        return bool(self.clock() - p.at <= self.window)


class _Mark:
    """A clue two runs produced: it links nothing until `window` after the last of them."""

    __slots__ = ("at",)

    def __init__(self, at: float):
        self.at = at

    trace_id = ""


__all__ = [
    "CONTINUATION",
    "HEADER",
    "NO_PRODUCE",
    "TOOL_REQUEST",
    "TRACEPARENT",
    "Asked",
    "Found",
    "Produced",
    "Producer",
    "RunIndex",
    "arguments_clue",
    "response_clue",
    "same_tool",
    "tool_call_clue",
    "usable",
]
