"""Everything a running proxy holds, built once at start-up and kept on `app.state.runtime`."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from meterline.costing.budgets import Budgets
from meterline.costing.config import Settings
from meterline.costing.engine import create_engine, create_schema
from meterline.costing.ingest import LedgerWriter
from meterline.costing.keys import KeyCache
from meterline.costing.org import Org
from meterline.costing.prices import PriceBook
from meterline.costing.redaction import Redactor
from meterline.costing.spool import Spool

from . import alerts
from .auth import KeyLookups
from .caps import Caps
from .mcp_metering import Resumed, Rounds
from .mcp_sessions import Sessions
from .mcp_upstream import MCPUpstreams
from .meter import Call, Meter
from .metrics import Metrics
from .routing import Router
from .tracestate import trace_secret
from .upstream import Upstreams
from .usage import Estimator

log = logging.getLogger("meterline.proxy")


class Runtime:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.max_body_bytes = settings.server.max_body_bytes
        self.caps = Caps.from_settings(settings.server)
        self.estimator = Estimator()
        self.engine = create_engine(settings.database)
        self.router = Router(settings.models)
        self.org = Org(settings)
        self.prices = PriceBook(settings.prices)
        self.keys = KeyCache(self.engine)
        self.lookups = KeyLookups(self.keys)
        self.upstreams = Upstreams(settings.providers)
        self.mcp = MCPUpstreams(settings.mcp_servers)
        self.mcp_rounds = Rounds()
        self.mcp_resumed = Resumed()
        self.mcp_sessions = Sessions()
        self.litellm: Any = None  # set when a `kind: litellm` provider is configured
        self.metrics = Metrics()
        self.telemetry: Any = None  # set when `telemetry.otlp_endpoint` is configured
        self.budgets: Budgets | None = None  # set at start
        self.spool: Spool | None = None
        self.writer: LedgerWriter | None = None
        self.meter: Meter = None  # type: ignore[assignment]
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        await asyncio.to_thread(create_schema, self.engine)
        self.spool = Spool(self.settings.server.spool_dir)
        self.writer = LedgerWriter(self.engine, self.spool, self.settings.server.flush_interval_ms / 1000)
        # Replay whatever an earlier run left spooled before serving anything.
        try:
            await asyncio.to_thread(self.writer.flush)
        except Exception as e:  # noqa: BLE001 - the database may be down; the writer retries
            log.error("could not replay the spool yet: %s", e)
        self.writer.start()
        self.meter = Meter(
            self.spool,
            self.prices,
            self.org,
            subcalls=self.settings.chargeback.subcalls,
            store_prompts=self.settings.server.store_prompts,
            trace_secret=trace_secret(self.settings.server.trace_secret or self.settings.server.admin_key),
            redact=Redactor(self.settings.secret_values()),
        )
        self.meter.on_record.append(self.metrics.record)
        if self.settings.telemetry.otlp_endpoint:
            from .telemetry import Telemetry  # the OpenTelemetry SDK only when spans are exported

            self.telemetry = Telemetry.otlp(self.settings.telemetry)
            self.meter.on_record.append(self.telemetry.record)
        await asyncio.to_thread(self.keys.refresh)
        self.budgets = Budgets.from_settings(
            self.engine, self.settings, self.prices, on_alert=alerts.webhook(self.settings.budgets.webhook_url)
        )
        for key in self.keys.known():  # keys' own budgets, read with the rest at the first refresh
            if key.budget_usd is not None:
                self.budgets.key_budget(key.id, key.budget_usd)
        self.budgets.follow(self.writer)
        await asyncio.to_thread(self.budgets.start)
        self.meter.on_record.append(self._settle)
        await self.upstreams.start()
        await self.mcp.start()
        if any(p.kind == "litellm" for p in self.settings.providers.values()):
            from .litellm_provider import LiteLLMProviders  # slow import, only when needed

            self.litellm = LiteLLMProviders(self.settings.providers)
        self._tasks.append(asyncio.create_task(self._refresh_keys()))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await self.upstreams.close()
        await asyncio.to_thread(self.estimator.close)
        if self.telemetry is not None:
            await asyncio.to_thread(self.telemetry.shutdown)  # exports the spans still buffered
        await self.mcp.close()
        if self.budgets is not None:
            await asyncio.to_thread(self.budgets.stop)
        if self.writer:
            await asyncio.to_thread(self.writer.stop)
        if self.spool:
            self.spool.close()
        self.engine.dispose()

    async def _refresh_keys(self) -> None:
        while True:
            await asyncio.sleep(self.settings.server.key_refresh_seconds)
            try:
                await asyncio.to_thread(self.keys.refresh)
            except Exception as e:  # noqa: BLE001 - keep serving with the keys we know
                log.warning("key refresh failed: %s", e)

    def admit(self, call: Call) -> None:
        """Raise BudgetExceeded, before the call reaches an upstream, if a budget refuses it (the
        route records the refusal)."""
        if self.budgets is not None:
            self.budgets.admit(call)

    def _settle(self, event: dict[str, Any], call: Call, response_model: str) -> None:
        assert self.budgets is not None
        self.budgets.settle(event, call)
