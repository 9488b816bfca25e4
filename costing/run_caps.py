"""Run caps: an agent run stopped at its cost, call, depth, duration or repeat cap (`runs:`).

A run is a trace, however its calls were linked (costing/run_links.py). Each serving process
keeps, per run it serves, what the run has spent: in flight (reserved at admission, as budgets
estimate it), recorded here but not yet in the ledger, and what the ledger held when last read.
A call that would take its run past a cap is refused (`RunCapExceeded`, 429
`run_budget_exceeded`) and so is every later call of the run: the run is capped.

Across processes a run's calls land in the ledger within the writers' flush interval. Before
each call of a run that another process also serves, the run is read from the ledger (off the
event loop). So the spend past a cost cap is at most the call that crossed it, plus what other
processes admitted for the run and had not yet written (within one flush interval). An agent's
turns come one after another, and the proxy places a turn whose producer was served elsewhere
only once that producer is in the ledger: for such a run the bound is the one call.

Depth counts nesting: a tool call is one deeper than the LLM call that asked for it, an LLM
call made while serving a tool call one deeper than that tool call, and the next turn of a
conversation as deep as the turn it continues.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

import sqlalchemy as sa

from .config import RunCapsConfig, Settings
from .errors import RunCapExceeded
from .landings import in_ledger
from .money import ZERO, from_pico
from .notes import note_once
from .run_links import CONTINUATION, HEADER
from .tables import EVENTS, RUN_CLUES

MAX_RUNS = 50_000  # runs followed per process; the least recently active go first
# Calls whose depth is remembered, over every run followed (~120 bytes each): past it the least
# recently active runs are forgotten (a run's next call then reads it from the ledger), and a run
# holding them all forgets its oldest calls (a child of one counts as 1 deep).
MAX_DEPTHS = 200_000
CAPPED = "run capped:"  # how a capped run's refusals begin, in the ledger's `error`
NOTE_KIND = "run_capped"  # the ledger note a capped run gets, once (reports list capped runs by it)


class RunCall(Protocol):
    """What run caps read of a call (proxy/meter.py's Call)."""

    @property
    def call_id(self) -> str: ...
    @property
    def trace_id(self) -> str: ...
    @property
    def parent_call_id(self) -> str: ...
    @property
    def link(self) -> str: ...
    @property
    def payer(self) -> Any: ...
    @property
    def kind(self) -> str: ...
    @property
    def method(self) -> str: ...


@dataclass(slots=True)
class RunState:
    started: float  # monotonic seconds: when its first call was admitted here, or as the ledger says
    ledger_calls: int = 0
    ledger_cost: Decimal = ZERO
    ledger_repeats: Counter[str] = field(default_factory=Counter)
    read_at: float | None = None  # when the ledger was last read for it (None: never)
    own: bool = True  # its first call was admitted here
    unlanded: dict[str, tuple[Decimal, tuple[str, ...]]] = field(default_factory=dict)  # recorded here, not in the ledger yet
    inflight: dict[str, Decimal] = field(default_factory=dict)  # admitted here, not recorded yet
    depths: dict[str, int] = field(default_factory=dict)  # of its calls seen here
    capped: str = ""  # why, once capped

    @property
    def calls(self) -> int:
        return self.ledger_calls + len(self.unlanded) + len(self.inflight)

    @property
    def cost(self) -> Decimal:
        return self.ledger_cost + sum((c for c, _ in self.unlanded.values()), ZERO) + sum(self.inflight.values(), ZERO)

    def repeats(self) -> int:
        counts = Counter(self.ledger_repeats)
        for _, asks in self.unlanded.values():
            counts.update(asks)
        return max(counts.values(), default=0)


class RunCaps:
    """Parameters:
    settings: `runs:` (defaults and per-team overrides).
    estimate: what a call is expected to cost (budgets' estimator), reserved at admission.
    engine: the ledger, read for runs other processes also serve.
    refresh_seconds: how old a ledger view of a run may be.
    clock: monotonic seconds.
    """

    def __init__(
        self,
        settings: Settings,
        estimate: Callable[[Any], Decimal],
        engine: sa.Engine | None = None,
        *,
        refresh_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        cfg = settings.runs
        self.defaults = cfg if cfg.any() else None
        self.teams: dict[str, RunCapsConfig] = {team: cfg.merged(o) for team, o in cfg.teams.items()}
        self.estimate = estimate
        self.engine = engine
        self.refresh_seconds = refresh_seconds
        self.clock = clock
        self._runs: OrderedDict[str, RunState] = OrderedDict()
        self._of_call: dict[str, str] = {}  # call id -> trace, until it lands
        self._depths = 0  # entries in the runs' `depths`, kept under MAX_DEPTHS
        self._lock = threading.Lock()  # the writer's thread tells of landed calls
        self.capped_total = 0
        self.newly_capped: list[tuple[str, str, str]] = []  # (trace, team, why) to note, taken by the proxy

    def caps(self, team: str) -> RunCapsConfig | None:
        return self.teams.get(team, self.defaults)

    @property
    def enabled(self) -> bool:
        return self.defaults is not None or bool(self.teams)

    # -- admission ------------------------------------------------------------------------

    def needs_ledger(self, call: RunCall) -> bool:
        """Whether the run should be read from the ledger before `call` is admitted: one that
        another process serves too (this call's parent was served elsewhere, or an earlier one's
        was). Such a run is read before each of its calls: a cap is checked against everything
        that landed, not against a view a few calls old."""
        caps = self.caps(call.payer.team) if self.engine is not None else None
        if caps is None or not call.parent_call_id and not call.link:
            return False  # no caps, or a root: nothing of its run can be elsewhere yet
        st = self._runs.get(call.trace_id)
        return st is None or not st.own or call.parent_call_id not in st.depths

    def read_ledger(self, trace_id: str) -> None:
        """Take in what the ledger holds of a run (blocking: call it off the event loop)."""
        assert self.engine is not None
        t, c = EVENTS, RUN_CLUES
        with self._lock:  # only this process's calls not yet known to have landed are looked for
            st0 = self._runs.get(trace_id)
            waiting = list(st0.unlanded) if st0 is not None else []
        capped = sa.func.sum(sa.case((sa.and_(t.c.status == "rejected", t.c.error.like(CAPPED + "%")), 1), else_=0))
        with self.engine.connect() as conn:
            # Which of ours landed before the sums: on PostgreSQL each statement sees the
            # commits made before it, and a call landing in between is then counted twice
            # until the next read (as budgets do), never left out.
            landed = in_ledger(conn, waiting)
            row = conn.execute(
                sa.select(
                    sa.func.count().filter(t.c.status != "rejected"), sa.func.coalesce(sa.func.sum(t.c.cost_pico), 0),
                    sa.func.min(t.c.ts), capped,
                ).where(t.c.trace_id == trace_id)
            ).one()  # fmt: skip
            asks = conn.execute(
                sa.select(c.c.clue, c.c.tool, sa.func.count())
                .where(c.c.trace_id == trace_id, c.c.clue.like("a:%"))
                .group_by(c.c.clue, c.c.tool)
            ).all()
        now = self.clock()
        with self._lock:
            st = self._state(trace_id, now, own=False)
            st.ledger_calls, st.ledger_cost = int(row[0] or 0), from_pico(int(row[1] or 0))
            st.ledger_repeats = Counter({f"{tool}\0{clue}": n for clue, tool, n in asks})
            st.read_at = now
            if row[2] is not None:
                age = (time.time() - row[2].timestamp()) if row[2].tzinfo else 0.0
                st.started = min(st.started, now - max(age, 0.0))
            for call_id in landed & st.unlanded.keys():  # in the ledger's count now
                del st.unlanded[call_id]
            if row[3] and not st.capped:
                st.capped = "capped on another replica"

    def admit(self, call: RunCall) -> None:
        """Refuse `call` (RunCapExceeded) if its run is capped or it would pass a cap; else
        reserve its estimate in its run."""
        caps = self.caps(call.payer.team)
        if caps is None:
            return
        now = self.clock()
        with self._lock:
            st = self._state(call.trace_id, now, own=not call.parent_call_id and not call.link)
            if call.parent_call_id and call.parent_call_id not in st.depths:
                st.own = False  # its parent was served elsewhere: the run is shared
            depth = self._depth(st, call)
            self._remember_depth(st, call.call_id, depth)
            estimate = self.estimate(call)
            why = st.capped or self._over(st, caps, depth, estimate, now)
            if why:
                if not st.capped:
                    st.capped = why
                    self.capped_total += 1
                    self.newly_capped.append((call.trace_id, call.payer.team, why))
                raise RunCapExceeded(f"{CAPPED} {why}; the rest of this run is refused (trace {call.trace_id})")
            st.inflight[call.call_id] = estimate
            self._of_call[call.call_id] = call.trace_id

    def _over(self, st: RunState, caps: RunCapsConfig, depth: int, estimate: Decimal, now: float) -> str:
        if caps.max_calls is not None and st.calls + 1 > caps.max_calls:
            return f"it made {st.calls} calls, its cap is {caps.max_calls}"
        if caps.max_depth is not None and depth > caps.max_depth:
            return f"this call is {depth} deep, its cap is {caps.max_depth}"
        if caps.max_seconds is not None and now - st.started > caps.max_seconds:
            return f"it has run {now - st.started:.0f} s, its cap is {caps.max_seconds:g} s"
        if caps.max_repeats is not None and st.repeats() >= caps.max_repeats:
            return f"it asked for the same tool with the same arguments {st.repeats()} times, its cap is {caps.max_repeats}"
        if caps.max_cost_usd is not None and st.cost + estimate > caps.max_cost_usd:
            return f"it spent ${st.cost:.6f} and this call may cost ${estimate:.6f}, its cap is ${caps.max_cost_usd}"
        return ""

    def _remember_depth(self, st: RunState, call_id: str, depth: int) -> None:
        if call_id not in st.depths:
            self._depths += 1
        st.depths[call_id] = depth
        while self._depths > MAX_DEPTHS:
            trace, oldest = next(iter(self._runs.items()))
            if oldest is st:  # this run holds them all
                del st.depths[next(iter(st.depths))]
                self._depths -= 1
            else:
                self._forget(trace)

    def _forget(self, trace_id: str) -> None:
        gone = self._runs.pop(trace_id)
        self._depths -= len(gone.depths)
        for call_id in (*gone.unlanded, *gone.inflight):
            self._of_call.pop(call_id, None)

    def _depth(self, st: RunState, call: RunCall) -> int:
        parent = st.depths.get(call.parent_call_id) if call.parent_call_id else None
        if parent is None:
            return 0 if not call.parent_call_id else 1
        return parent if call.link in (CONTINUATION, HEADER) else parent + 1

    def _near(self, st: RunState, caps: RunCapsConfig) -> bool:
        if caps.max_cost_usd is not None and st.cost * 2 >= caps.max_cost_usd:
            return True
        if caps.max_calls is not None and st.calls * 2 >= caps.max_calls:
            return True
        return caps.max_repeats is not None and st.repeats() * 2 >= caps.max_repeats

    def _state(self, trace_id: str, now: float, own: bool) -> RunState:
        st = self._runs.get(trace_id)
        if st is None:
            st = self._runs[trace_id] = RunState(started=now, own=own)
            if len(self._runs) > MAX_RUNS:
                self._forget(next(iter(self._runs)))
        else:
            self._runs.move_to_end(trace_id)
        return st

    # -- the call's end and its landing ----------------------------------------------------

    def settle(self, event: dict[str, Any], call: RunCall) -> None:
        """The call was recorded: its real cost replaces its estimate (observer of Meter.record)."""
        if self.caps(call.payer.team) is None:
            return
        with self._lock:
            st = self._runs.get(call.trace_id)
            if st is None:
                return
            st.inflight.pop(call.call_id, None)
            if event["status"] == "rejected":
                self._of_call.pop(call.call_id, None)
                return
            asks = tuple(f"{tool}\0{clue}" for clue, tool in event.get("run_produced") or () if clue.startswith("a:"))
            st.unlanded[call.call_id] = (from_pico(event["cost_pico"]), asks)

    def landed(self, call_ids: list[str]) -> None:
        """The writer committed these calls (its thread): they count as the ledger's now."""
        with self._lock:
            for call_id in call_ids:
                trace = self._of_call.pop(call_id, None)
                st = self._runs.get(trace) if trace else None
                entry = st.unlanded.pop(call_id, None) if st is not None else None
                if st is not None and entry is not None:
                    st.ledger_calls += 1
                    st.ledger_cost += entry[0]
                    st.ledger_repeats.update(entry[1])

    def capped_runs(self) -> list[tuple[str, str]]:
        """(trace id, why) of the runs capped here that are still followed."""
        with self._lock:
            return [(t, st.capped) for t, st in self._runs.items() if st.capped]


def note_capped(engine: sa.Engine, trace_id: str, team: str, why: str, now: datetime) -> bool:
    """Note in the ledger that a run was capped, once per run; True if this call noted it."""
    return note_once(engine, NOTE_KIND, trace_id, f"{now:%Y-%m}", f"team {team}: {why}", now)


__all__ = ["CAPPED", "MAX_DEPTHS", "NOTE_KIND", "RunCaps", "RunState", "note_capped"]
