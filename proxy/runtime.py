"""Everything a running proxy holds, built once at start-up and kept on `app.state.runtime`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import aiohttp
import httpx
import sqlalchemy as sa

from meterline.costing.budgets import Budgets
from meterline.costing.config import Settings
from meterline.costing.credit_balances import Credits, budget_allowance
from meterline.costing.credits import Drawdown
from meterline.costing.engine import create_engine, create_schema
from meterline.costing.estimate import LOCAL
from meterline.costing.ingest import LedgerWriter
from meterline.costing.keys import KeyCache
from meterline.costing.org import Org
from meterline.costing.prices import PriceBook
from meterline.costing.rate_leases import RateLeases
from meterline.costing.rate_limits import RateLimits
from meterline.costing.redaction import Redactor
from meterline.costing.run_caps import RunCaps, note_capped
from meterline.costing.run_ledger import producer_of
from meterline.costing.spool import Spool, claim
from meterline.costing.tokenizer_process import TokenizerProcess

from . import alerts
from .anomaly_watch import AnomalyWatch
from .auth import KeyLookups
from .caps import Caps
from .durability import unavailable
from .mcp_metering import Resumed, Rounds
from .mcp_sessions import Sessions
from .mcp_upstream import MCPUpstreams, new_client
from .meter import Call, Meter
from .metrics import Metrics
from .routing import Router
from .tracestate import trace_secret
from .upstream import Upstreams, new_session
from .usage import Estimator

if TYPE_CHECKING:
    from meterline.costing.jetstream import JetStreamSpool, StreamWriter

    from .litellm_provider import LiteLLMProviders
    from .telemetry import Telemetry

PLACE_TRIES = 5  # looks in the ledger, a flush interval apart, for the producer of a capped run's call

log = logging.getLogger("meterline.proxy")


class Runtime:
    """Everything a running proxy holds, every part of it there from the first request on.

    Built by `await Runtime.start(...)` inside the running loop (the app's lifespan), which
    opens the spool and the ledger, writes in what dead processes left spooled, and starts the
    background work; `stop()` closes it all. Optional parts are optional by configuration only:
    `telemetry` without `telemetry.otlp_endpoint`, `litellm`
    without a `kind: litellm` provider.

    Parameters (of `start`):
    settings: the loaded config.
    upstream_client: the aiohttp session (or a stand-in with its `post`) that LLM calls go
        to their providers through; its giver closes it. Default: the proxy's own pool.
    mcp_transport: the httpx transport MCP requests go through (an `httpx.MockTransport` in
        tests). Default: the network.
    """

    def __init__(
        self,
        settings: Settings,
        engine: sa.Engine,
        spool: Spool | JetStreamSpool,
        writer: LedgerWriter | StreamWriter,
        upstreams: Upstreams,
        mcp: MCPUpstreams,
    ) -> None:
        server = settings.server
        self.settings = settings
        self.max_body_bytes = server.max_body_bytes
        self.caps = Caps.from_settings(server)
        self.estimator = Estimator(tokens=TokenizerProcess() if server.tokenizer == "process" else LOCAL)
        self.engine = engine
        self.router = Router(settings.models)
        self.org = Org(settings)
        self.prices = PriceBook(settings.prices)
        self.keys = KeyCache(engine)
        self.lookups = KeyLookups(self.keys)
        self.upstreams = upstreams
        self.mcp = mcp
        self.mcp_rounds = Rounds()
        self.mcp_resumed = Resumed()
        self.mcp_sessions = Sessions()
        self.metrics = Metrics()
        self.spool = spool
        self.writer = writer
        # How long a response waits for its event's acknowledgement (durability.py); None with
        # the disk spool, whose append is durable on return.
        self.ack_timeout = server.jetstream.ack_timeout_seconds if not isinstance(spool, Spool) else None
        self.spool_kind = "jetstream" if not isinstance(spool, Spool) else "disk"
        # Why the last key refresh could not read the ledger ("" when it could): with no calls
        # to write, the writer never meets a database that went away, the refresh does.
        self.ledger_error = ""
        self.meter = Meter(
            spool,
            self.prices,
            self.org,
            subcalls=settings.chargeback.subcalls,
            store_prompts=server.store_prompts,
            trace_secret=trace_secret(server.trace_secret or server.admin_key),
            redact=Redactor(settings.secret_values()),
        )
        self.meter.on_record.append(self.metrics.record)
        self.telemetry: Telemetry | None = None
        if settings.telemetry.otlp_endpoint:
            from .telemetry import Telemetry  # the OpenTelemetry SDK only when spans are exported

            self.telemetry = Telemetry.otlp(settings.telemetry)
            self.meter.on_record.append(self.telemetry.record)
        self.budgets = Budgets.from_settings(
            engine, settings, self.prices, on_alert=alerts.webhook(settings.budgets.webhook_url)
        )
        self.credits = Credits(
            engine, settings, self.budgets.accountant.estimator, replica=self.budgets.replica,
            on_alert=alerts.credit_webhook(settings.alerts.webhook_url or settings.budgets.webhook_url),
        )  # fmt: skip
        if isinstance(writer, LedgerWriter):
            # Before any call is recorded. A stream writer writes every replica's events, not
            # this one's: budgets and credits ask the ledger which of ours landed instead.
            self.budgets.follow(writer)
            self.credits.follow(writer)
        self.credits.on_refresh.append(self._credit_allowance)
        self.rate_limits = RateLimits(settings, self.prices, refresh_seconds=settings.budgets.refresh_seconds)
        self.rate_leases = RateLeases(engine, self.rate_limits, self.budgets.replica, self.budgets.lease_ttl)
        # Admission, in order, before anything reaches an upstream: each step may refuse (raise
        # a CostingError, which the route records as `rejected`) or return headers for the
        # response. A call refused by a later step gives back what earlier ones reserved when
        # its refusal is recorded (their settle). Run caps take their place here.
        self.run_caps = RunCaps(
            settings, self.budgets.accountant.estimator.estimate, engine, refresh_seconds=settings.budgets.refresh_seconds
        )
        self.writer.on_written.append(self.run_caps.landed)
        self.admission: list[Callable[[Call], dict[str, str] | None]] = [
            self.rate_limits.admit, self._run_caps, self._credits, self._budget,
        ]  # fmt: skip
        self.meter.on_record.append(self._settle)
        hook = alerts.anomaly_webhook(settings.alerts.webhook_url or settings.budgets.webhook_url)
        self.anomalies = AnomalyWatch(engine, settings.alerts, self.metrics, hook, lambda: self.meter.clock())
        self.litellm: LiteLLMProviders | None = None
        if any(p.kind == "litellm" for p in settings.providers.values()):
            from .litellm_provider import LiteLLMProviders  # slow import, only when needed

            self.litellm = LiteLLMProviders(settings.providers)
        self._tasks: list[asyncio.Task[None]] = []
        self._notes: set[asyncio.Future[None]] = set()

    @classmethod
    async def start(
        cls,
        settings: Settings,
        *,
        upstream_client: aiohttp.ClientSession | None = None,
        mcp_transport: httpx.AsyncBaseTransport | None = None,
    ) -> Runtime:
        engine = create_engine(settings.database)
        await asyncio.to_thread(create_schema, engine)
        server = settings.server
        interval = server.flush_interval_ms / 1000
        spool: Spool | JetStreamSpool
        writer: LedgerWriter | StreamWriter
        if server.spool_url:
            from meterline.costing.jetstream import (  # nats-py: the `nats` extra
                JetStreamSpool,
                StreamWriter,
            )

            spool = await JetStreamSpool.open(server.spool_url, server.jetstream)
            try:
                writer = await StreamWriter.open(engine, server.spool_url, server.jetstream, interval, spool)
            except BaseException:
                await spool.close()
                raise
        else:
            spool = claim(server.spool_dir)  # a folder of this process's own in the shared root
            writer = LedgerWriter(engine, spool, interval, root=server.spool_dir, mode=server.ledger_writer)
        upstreams = Upstreams(settings.providers, upstream_client or new_session(), owned=upstream_client is None)
        mcp = MCPUpstreams(settings.mcp_servers, new_client(mcp_transport))
        rt = cls(settings, engine, spool, writer, upstreams, mcp)
        if isinstance(writer, LedgerWriter):
            # Write in whatever this host's processes that are gone left spooled, before serving.
            try:
                await asyncio.to_thread(writer.adopt)
            except Exception as e:  # noqa: BLE001 - the database may be down; the writer retries
                log.error("could not replay the spool yet: %s", e)
        rt.writer.start()
        await asyncio.to_thread(rt.keys.refresh)
        for key in rt.keys.known():  # keys' own budgets, read with the rest at the first refresh
            if key.budget_usd is not None:
                rt.budgets.key_budget(key.id, key.budget_usd)
        await asyncio.to_thread(rt.budgets.start)
        await asyncio.to_thread(rt.credits.start)
        for key in rt.keys.known():  # keys' own rate limits, leased before their first call
            rt.rate_limits.prepare(key)
        await asyncio.to_thread(rt.rate_leases.start)
        rt._tasks.append(asyncio.create_task(rt._refresh_keys()))
        if settings.alerts.anomalies:
            rt._tasks.append(asyncio.create_task(rt.anomalies.run()))
        return rt

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        if self._notes:  # capped runs' notes still being written
            await asyncio.gather(*self._notes, return_exceptions=True)
        await self.upstreams.close()
        if self.litellm is not None:
            await self.litellm.close()
        await asyncio.to_thread(self.estimator.close)
        if self.telemetry is not None:
            await asyncio.to_thread(self.telemetry.shutdown)  # exports the spans still buffered
        await self.mcp.close()
        await asyncio.to_thread(self.credits.stop)
        await asyncio.to_thread(self.budgets.stop)
        await asyncio.to_thread(self.rate_leases.stop)
        if isinstance(self.writer, LedgerWriter):
            await asyncio.to_thread(self.writer.stop)
        if isinstance(self.spool, Spool):
            self.spool.close()
        else:
            await self.spool.close()  # after the events in flight are acknowledged
        if not isinstance(self.writer, LedgerWriter):
            await self.writer.stop()
        self.engine.dispose()

    async def _refresh_keys(self) -> None:
        while True:
            await asyncio.sleep(self.settings.server.key_refresh_seconds)
            try:
                await asyncio.to_thread(self.keys.refresh)
            except sa.exc.SQLAlchemyError as e:  # keep serving with the keys we know
                self.ledger_error = str(e).splitlines()[0][:200]
                log.warning("key refresh failed (ledger unavailable): %s", self.ledger_error)
            except Exception as e:  # noqa: BLE001 - keep serving with the keys we know
                log.warning("key refresh failed: %s", e)
            else:
                self.ledger_error = ""

    def check_spool(self) -> None:
        """Raise 503 `spool_unavailable` while calls cannot be recorded durably: the JetStream
        spool's broker is unreachable, or the disk spool's disk refuses writes."""
        if not self.spool.healthy:
            raise unavailable("its spool disk refuses writes" if isinstance(self.spool, Spool) else "its event broker is unreachable")

    def spool_state(self) -> str:
        """The spool's state for /healthz: "ok" or what is wrong."""
        if isinstance(self.spool, Spool):
            return self.spool.error or "ok"
        return self.spool.state

    async def flush_ledger(self) -> int:
        """Write what is spooled into the ledger now; how many events were new."""
        if isinstance(self.writer, LedgerWriter):
            return await asyncio.to_thread(self.writer.flush)
        return await self.writer.flush()

    def admit(self, call: Call) -> dict[str, str] | None:
        """Run the admission steps: raise the first refusal (RateLimited, CreditsExhausted, BudgetExceeded),
        before the call reaches an upstream (the route records it); else the headers the
        steps give the response (the `x-ratelimit-*` of its rate limits), None for none."""
        headers = None
        for step in self.admission:
            h = step(call)
            if h:
                headers = h if headers is None else headers | h
        return headers

    def capped(self, call: Call) -> bool:
        """Whether run caps apply to the call's team: only then is it `prepare`d."""
        return self.run_caps.enabled and self.run_caps.caps(call.payer.team) is not None

    async def prepare(self, call: Call) -> Call:
        """What run caps need from the ledger at admission, read off the event loop: the run of
        a call whose clues name a call another process served, and what that run has spent
        elsewhere. Returns the call, placed in its run if the ledger knew it. Without caps
        for the call's team this does nothing (its links are made when it lands), and the
        routes skip it (`capped`): most calls need no coroutine here."""
        capped = self.capped(call)
        waited = False
        try:
            if call.asked is not None and capped:
                # Only a capped run must be whole at admission (so that it cannot escape its
                # caps by changing replica); other calls are linked when they land.
                waited = True
                call = await self._place(call, wait=True)
            if capped and self.run_caps.needs_ledger(call):
                waited = True
                await asyncio.to_thread(self.run_caps.read_ledger, call.trace_id)
        except sa.exc.SQLAlchemyError as e:  # admitted on what this process knows
            log.warning("could not read the run of call %s from the ledger: %s", call.call_id, str(e).splitlines()[0][:200])
        # A call is stamped when it is admitted: others admitted while this one waited must not
        # carry later times than it (a budget's refusal and the calls after it stay in order).
        return call._replace(ts=self.meter.clock()) if waited else call

    async def _place(self, call: Call, wait: bool) -> Call:
        asked = call.asked
        assert asked is not None
        for attempt in range(PLACE_TRIES if wait else 1):
            if attempt:
                # Its producer may have ended on another replica a moment ago: spooled, not yet
                # landed. With run caps on, a run must not escape them by changing replica.
                await asyncio.sleep(self.settings.server.flush_interval_ms / 1000)
            found = await asyncio.to_thread(producer_of, self.engine, call.call_id, call.key_team, asked._asdict(), call.ts)
            if found is not None:
                parent, trace = found
                # The payer stays the key's team: a link found after the fact proves no more.
                return call._replace(trace_id=trace, parent_call_id=parent, parent_span_id=parent, link=asked.kind, asked=None)
        return call

    def _run_caps(self, call: Call) -> None:
        try:
            self.run_caps.admit(call)
        finally:
            if self.run_caps.newly_capped:
                self._note_capped()

    def _note_capped(self) -> None:
        """Log each run just capped, and note it in the ledger (off the event loop) for reports."""
        capped, self.run_caps.newly_capped = self.run_caps.newly_capped, []
        for trace, team, why in capped:
            log.warning("agent run %s of team %r capped: %s; its later calls are refused", trace, team, why)
            task = asyncio.get_running_loop().run_in_executor(None, self._store_capped, trace, team, why)
            self._notes.add(task)
            task.add_done_callback(self._notes.discard)

    def _store_capped(self, trace: str, team: str, why: str) -> None:
        try:
            note_capped(self.engine, trace, team, why, datetime.now(UTC))
        except sa.exc.SQLAlchemyError as e:  # the log line stays; reports miss the note
            log.warning("could not note capped run %s in the ledger: %s", trace, str(e).splitlines()[0][:200])

    def _credits(self, call: Call) -> None:
        self.credits.admit(call)

    def _budget(self, call: Call) -> None:
        self.budgets.admit(call)

    def _settle(self, event: dict[str, Any], call: Call, response_model: str) -> None:
        self.run_caps.settle(event, call)
        self.credits.settle(event, call)
        self.budgets.settle(event, call)
        self.rate_limits.settle(event, call)

    def _credit_allowance(self, drawdown: Drawdown, now: datetime) -> None:
        if self.budgets.limits:
            self.budgets.accountant.allowance = budget_allowance(self.settings, drawdown, now)
