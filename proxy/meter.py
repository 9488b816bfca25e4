"""The per-call work of the proxy, in one place: attribute at the start, price and record at the end.

`Meter.start` runs before anything reaches an upstream (auth is done by then) and returns the
call's complete, frozen `Call`; `Meter.record` prices the call and appends its event to the
spool, which makes it durable before the client gets the last bytes of the response.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, NamedTuple, Protocol

from meterline.costing.attribution import (
    clean,
    from_header,
    new_ids,
    parse_tags,
    parse_traceparent,
    traceparent,
)
from meterline.costing.keys import KeyInfo
from meterline.costing.money import (
    DEFAULT_TIER,
    MAX_CALL_COST,
    NO_EXTRA,
    ZERO,
    Usage,
    breakdown,
    capped,
    cost_detail,
    text_cost,
    tier_of,
    to_pico,
)
from meterline.costing.org import Org
from meterline.costing.prices import PriceBook
from meterline.costing.redaction import Redactor
from meterline.costing.run_links import (
    CONTINUATION,
    HEADER,
    NO_PRODUCE,
    TOOL_REQUEST,
    TRACEPARENT,
    Asked,
    Produced,
    Producer,
    RunIndex,
)
from meterline.costing.spool import EventSpool

from .durability import hold
from .tracestate import payer_member, verified_payer

log = logging.getLogger("meterline.proxy")

MAX_RUN_ROOTS = 100_000  # X-Meterline-Run runs remembered (their root call), oldest dropped
MAX_WARNED = 50  # models warned about as unpriced, one line each; then one line for all others
NO_USAGE = Usage()  # shared: Usage is frozen



class Priced(NamedTuple):
    cost: Decimal | None
    version: str
    flag: str  # usage_flag: "", invalid_usage, partly_priced
    tier: str  # the service tier billed
    above: int = 0  # the long-context threshold the prompt passed
    detail: str = ""  # cost by dimension, "dim=pico;...", for calls priced along more than text


@dataclass(frozen=True, slots=True)
class Payer:
    department: str
    team: str
    cost_center: str


class Call(NamedTuple):
    """One metered call as it was admitted: who is charged, what was asked of which upstream,
    where it sits in its trace. `Meter.start` returns it complete and nothing changes it after;
    how it ended goes to `Meter.record`, once, from the one place that owns the call's end (the
    route for an answer it gives whole, the relay for a stream).

    A NamedTuple rather than a frozen dataclass: one is built per call, and a frozen
    dataclass's `__init__` (an `object.__setattr__` per field) cost about a third more than
    the whole of `Meter.start` and `Meter.record` had before."""

    call_id: str
    kind: str
    method: str
    key: KeyInfo
    payer: Payer
    key_team: str
    project: str
    user: str
    tags: str
    trace_id: str
    parent_span_id: str
    parent_call_id: str
    link: str  # how it joined its run: traceparent, header, continuation, tool_request, "" (a root)
    asked: Asked | None  # clues no call in this process's memory produced: the ledger links them
    provider: str
    model: str
    tool: str
    upstream_model: str  # what the provider was asked for, when it differs from `model`
    request_bytes: int
    max_output_tokens: int  # the request's own cap on output tokens (0: none), for budgets
    reserved: Decimal  # a price known before the call (an MCP tool's): the least budgets reserve
    ts: datetime
    started: float  # perf_counter() at admission; a multi-round MCP call's is moved on per round

    @property
    def traceparent(self) -> str:
        """What the upstream gets: our span, child of the client's."""
        return traceparent(self.trace_id, self.call_id)


class Observer(Protocol):
    """Told of every recorded call, before its event is spooled (metrics, budgets, telemetry)."""

    def __call__(self, event: dict[str, Any], call: Call, response_model: str, /) -> None: ...


class Meter:
    """Parameters:
    spool: where events go: durable on return of `Spool.append` (disk), or once the awaitable
        the JetStream spool's `append` returns is done, which the response waits for (durability.py).
    prices, org: the price book and organisation.
    subcalls: `root_caller` (the team whose call started a tree pays for all of it) or
        `key_owner` (each call is paid by its key's team).
    on_record: observers of every recorded event (metrics, budgets, telemetry).
    redact: takes the configured secrets out of a call's error text before it is recorded.
    clock: when a call happens (UTC). Real time; `meterline demo` replaces it to spread a
        month of generated traffic. Clients can never set it.
    """

    def __init__(
        self,
        spool: EventSpool,
        prices: PriceBook,
        org: Org,
        *,
        subcalls: str = "root_caller",
        store_prompts: bool = False,
        trace_secret: bytes | None = None,
        redact: Redactor | None = None,
    ):
        self.spool = spool
        self.redact = redact or Redactor(())
        # Without a configured secret, one of this process: sub-calls still need proof here.
        self.trace_secret = trace_secret or secrets.token_bytes(32)
        self.prices = prices
        self.org = org
        self.subcalls = subcalls
        self.store_prompts = store_prompts
        self.on_record: list[Observer] = []
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)
        self._payers: dict[str, Payer] = {}
        self._warned: set[str] = set()
        self.runs = RunIndex()
        self._run_roots: OrderedDict[str, str] = OrderedDict()  # X-Meterline-Run trace -> its first call

    def start(
        self,
        key: KeyInfo,
        headers: Mapping[str, str],
        *,
        kind: str,
        method: str,
        provider: str,
        model: str = "",
        upstream_model: str = "",
        tool: str = "",
        request_bytes: int = 0,
        max_output_tokens: int = 0,
        reserved: Decimal = ZERO,
        body_user: object = None,
        traceparent: str | None = None,
        tracestate: str | None = None,
        asked: Asked | None = None,
    ) -> Call:
        """The call, complete: attributed, placed in its trace, and carrying what the route
        knows of it before anything reaches an upstream.

        `upstream_model`: the provider's name for `model` (kept only when it differs).
        `reserved`: a price known beforehand (an MCP tool's), the least budgets reserve.
        `traceparent`, `tracestate`: trace context found in the body (an MCP request's
        `params._meta`), preferred to the HTTP headers because it belongs to this one message.
        `asked`: what the request carries back of an earlier response (proxy/run_clues.py).

        The call joins a run by the first of: its trace context; `X-Meterline-Run`; what it
        carries back, if a call of this process produced it (else the ledger links it later)."""
        own = self._payer(key.team)
        ctx = parse_traceparent(traceparent)
        if ctx is None:
            ctx, tracestate = parse_traceparent(headers.get("traceparent")), headers.get("tracestate")
        parent = ctx.parent_span_id if ctx else ""
        parent_payer = None
        if ctx and parent and tracestate:
            # A parent's payer is inherited on proof only: our signed member for this trace and
            # this parent span. Call ids are not secret (upstreams get them in traceparent, the
            # exports list them), so knowing one proves nothing (docs/security.md).
            team = verified_payer(self.trace_secret, tracestate, ctx.trace_id, parent)
            parent_payer = self._payer(team) if team is not None else None
        trace_id, parent_call_id, link = (ctx.trace_id, parent if parent_payer else "", TRACEPARENT) if ctx else ("", "", "")
        if not parent_call_id:
            link = ""
        call_id, fresh_trace_id = new_ids()
        run = None if ctx else headers.get("x-meterline-run")
        if run:
            trace_id, parent, link = self._header_run(key.team, run, call_id, asked)
            parent_call_id = parent
            asked = None
        elif ctx is None and asked is not None:
            found = self.runs.tool_request(key.team, asked) if kind == "mcp" else self.runs.continued(key.team, asked)
            if found is not None:
                p = found.producer
                trace_id, parent, parent_call_id, link, asked = p.trace_id, p.call_id, p.call_id, found.link, None
                parent_payer = self._payer(p.payer_team)  # its own team's run: no proof needed
            else:  # served elsewhere, or never: the ledger links it if its producer lands
                asked = asked._replace(kind=TOOL_REQUEST if kind == "mcp" else CONTINUATION)
        payer = parent_payer if parent_payer and self.subcalls == "root_caller" else own
        project, user, tags = headers.get("x-meterline-project"), headers.get("x-meterline-user"), headers.get("x-meterline-tags")
        return Call(
            call_id=call_id,
            kind=kind,
            method=method,
            key=key,
            payer=payer,
            key_team=key.team,
            project=(clean(from_header(project)) if project else "") or key.project,
            user=(clean(from_header(user)) if user else "") or (clean(body_user) if isinstance(body_user, str) else ""),
            tags=parse_tags(from_header(tags)) if tags else "",
            trace_id=trace_id or fresh_trace_id,
            parent_span_id=parent,
            parent_call_id=parent_call_id,
            link=link,
            asked=asked,
            provider=provider,
            model=model,
            tool=tool,
            upstream_model=upstream_model if upstream_model != model else "",
            request_bytes=request_bytes,
            max_output_tokens=max_output_tokens,
            reserved=reserved,
            ts=self.clock(),
            started=time.perf_counter(),
        )

    def _header_run(self, team: str, run: str, call_id: str, asked: Asked | None) -> tuple[str, str, str]:
        """(trace, parent, link) of a call naming its run in `X-Meterline-Run`. The run's id is
        the team's: two teams that name runs alike get two runs. Its first call here is its
        root; later ones descend from the call they continue, if that is of the run, else
        from the root."""
        name = clean(from_header(run))
        trace = hashlib.blake2b(f"{team}\0{name}".encode(), digest_size=16, person=b"meterline-run").hexdigest()
        found = self.runs.continued(team, asked) if asked is not None else None
        if found is not None and found.producer.trace_id == trace:
            return trace, found.producer.call_id, HEADER
        root = self._run_roots.get(trace)
        if root is None:
            self._run_roots[trace] = call_id
            if len(self._run_roots) > MAX_RUN_ROOTS:
                self._run_roots.popitem(last=False)
            return trace, "", ""
        self._run_roots.move_to_end(trace)
        return trace, root, HEADER

    def _produced(self, call: Call, produced: Produced, event: dict[str, Any]) -> None:
        self.runs.add(call.key_team, Producer(call.call_id, call.trace_id, call.payer.team, time.monotonic()), produced)
        tools = iter(produced.tools)
        event["run_produced"] = [(c, next(tools, "") if c.startswith("a:") else "") for c in produced.clues]

    def _payer(self, team_id: str) -> Payer:
        payer = self._payers.get(team_id)
        if payer is None:  # one shared (frozen) Payer per team: the org does not change while serving
            team = self.org.teams.get(team_id)
            payer = Payer(team.department, team_id, team.cost_center) if team else Payer("", team_id, "")
            if len(self._payers) < 100_000:  # team ids from signed tracestate are bounded by the org, but be safe
                self._payers[team_id] = payer
        return payer

    def tracestate(self, call: Call) -> str:
        """Our tracestate member for what `call` sends upstream: the proof its sub-calls show."""
        return payer_member(self.trace_secret, call.trace_id, call.call_id, call.payer.team)

    def price(self, call: Call, usage: Usage) -> Priced:
        """What a call's usage costs at the price in force (cost None: no price known)."""
        # The client's name (a `prices:` entry) first, then the provider's (the bundled map).
        names = (call.model, call.upstream_model) if call.upstream_model else (call.model,)
        p = self.prices.lookup(*names, at=call.ts)
        if p is None:
            if call.model not in self._warned and len(self._warned) <= MAX_WARNED:
                self._warned.add(call.model)
                if len(self._warned) <= MAX_WARNED:
                    log.warning(
                        "no price for model %r: its calls are recorded as unpriced until it gets a `prices:` entry",
                        " / ".join(dict.fromkeys(names)),
                    )
                else:  # client-chosen names (a glob) must not fill the log: one line says so
                    log.warning(
                        "no price for %d models and more: no longer warning per model (see meterline_unpriced_requests)",
                        MAX_WARNED,
                    )
            return Priced(None, "", usage.flag, tier_of(usage.service_tier))
        if p.simple and usage.is_plain():  # the common call: text only, nothing to break down
            cost, flag = text_cost(usage, p.rates), usage.flag
            if cost > MAX_CALL_COST:
                cost, flag = capped(cost, flag)
            return Priced(cost, p.version, flag, DEFAULT_TIER)
        b = breakdown(usage, p)
        cost, flag = capped(b.total, b.flag)
        return Priced(cost, p.version, flag, b.tier, b.above, cost_detail(b))

    def record(
        self,
        call: Call,
        *,
        status: str,
        usage: Usage | None = None,
        usage_source: str | None = None,
        response_model: str = "",
        http_status: int = 200,
        response_bytes: int = 0,
        cost: Decimal | None = None,
        error: str = "",
        produced: Produced = NO_PRODUCE,
    ) -> Decimal | None:
        """Price the call (unless `cost` is given) and append its event to the spool; returns
        its cost (None: no price known). Once per call: each call's owner calls it on the one
        path by which the call ends, and nothing here checks (a second record would be a
        second event, and a bug in that owner).

        `usage_source` defaults to `reported`, except for a failed or refused call without
        usage (a provider that refused the connection, a budget's 429): nothing was reported,
        so it is `estimated`, at 0 tokens.

        `produced`: what the response handed the client that a later call may carry back
        (its tool calls, its id): remembered here before the client has the response whole,
        and spooled, for a call another process serves."""
        if usage_source is None:
            usage_source = "estimated" if usage is None and status in ("upstream_error", "rejected") else "reported"
        if usage is None:
            usage = NO_USAGE
        # A failed call costs nothing unless tokens were used (a stream that broke mid-way).
        billable = status not in ("upstream_error", "rejected") or usage != NO_USAGE
        extra = usage.extra or NO_EXTRA
        if cost is None and billable and call.kind != "mcp":
            p = self.price(call, usage)
            cost = p.cost
        else:
            p = Priced(cost, "", extra.flag, "" if call.kind == "mcp" else tier_of(extra.service_tier))
        is_priced = cost is not None or not billable
        event = {
            "call_id": call.call_id,
            "ts": call.ts,
            "kind": call.kind,
            "status": status,
            "department": call.payer.department,
            "team": call.payer.team,
            "cost_center": call.payer.cost_center,
            "key_team": call.key_team,
            "project": call.project,
            "user": call.user,
            "key_id": call.key.id,
            "provider": call.provider,
            "model": call.model,
            "tool": call.tool,
            "method": call.method,
            "input_tokens": usage.input_tokens,
            "cached_input_tokens": usage.cached_input_tokens,
            "output_tokens": usage.output_tokens,
            "reasoning_tokens": usage.reasoning_tokens,
            "cache_write_tokens": usage.cache_write_tokens,
            "cache_write_1h_tokens": extra.cache_write_1h_tokens,
            "input_audio_tokens": extra.input_audio_tokens,
            "output_audio_tokens": extra.output_audio_tokens,
            "input_image_tokens": extra.input_image_tokens,
            "output_image_tokens": extra.output_image_tokens,
            "web_search_calls": extra.web_search_calls,
            "file_search_calls": extra.file_search_calls,
            "code_interpreter_calls": extra.code_interpreter_calls,
            "service_tier": p.tier,
            "long_context_above": p.above,
            "cost_detail": p.detail,
            "usage_flag": p.flag,
            "cost_pico": to_pico(cost) if cost is not None else 0,
            "priced": is_priced,
            "price_version": p.version,
            "usage_source": usage_source,
            "trace_id": call.trace_id,
            "parent_span_id": call.parent_span_id,
            "parent_call_id": call.parent_call_id,
            "link": call.link,
            "tags": call.tags,
            "http_status": http_status,
            "latency_ms": int((time.perf_counter() - call.started) * 1000),
            "request_bytes": call.request_bytes,
            "response_bytes": response_bytes,
            "error": self.redact(error, 512) if error else "",
        }
        if call.asked is not None:
            event["run_asked"] = call.asked._asdict()
        if produced.clues:
            self._produced(call, produced, event)
        # Observers first: once spooled, the event may reach the ledger (and the writer tell
        # budgets so) at any moment, and budgets must have counted it by then.
        for observer in self.on_record:
            observer(event, call, response_model)
        ack = self.spool.append(event)
        if ack is not None:
            hold(ack)  # the response's remaining bytes wait for it
        return cost
