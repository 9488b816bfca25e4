"""The proxy's spend-anomaly check, off the request path: every `alerts.check_seconds` a
thread asks the ledger whether a team's or key's spend is in a spike (costing/anomalies.py).
A spike this replica notes first is logged, posted to the webhook and counted in /metrics;
one another replica (or an earlier check) noted is left alone, so each spike is told once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

import sqlalchemy as sa

from meterline.costing import anomalies
from meterline.costing.config import AlertsConfig

from .metrics import Metrics

log = logging.getLogger("meterline.anomalies")


class AnomalyWatch:
    """Parameters:
    engine: the ledger.
    cfg: `alerts:`.
    metrics: where spikes are counted.
    announce: the webhook (None: none configured).
    clock: the proxy's clock (the meter's, which the demo moves).
    """

    def __init__(
        self,
        engine: sa.Engine,
        cfg: AlertsConfig,
        metrics: Metrics,
        announce: Callable[[anomalies.Spike], None] | None,
        clock: Callable[[], datetime],
    ):
        self.engine, self.cfg, self.metrics, self.announce, self.clock = engine, cfg, metrics, announce, clock

    def check(self) -> list[anomalies.Spike]:
        """One check: the spikes this replica noted first (each told here)."""
        now = self.clock()
        going = anomalies.current(self.engine, self.cfg, now)
        self.metrics.anomalies_open.set(len(going))
        told = []
        for spike in going:
            if not anomalies.store(self.engine, spike, now):
                continue  # noted before: by this check earlier in the spike, or by another replica
            log.warning("spend anomaly: %s", spike.message)
            self.metrics.anomalies.labels(*spike.scope).inc()
            if self.announce is not None:
                self.announce(spike)
            told.append(spike)
        return told

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.check_seconds)
            try:
                await asyncio.to_thread(self.check)
            except sa.exc.SQLAlchemyError as e:
                log.warning("spend anomalies not checked (ledger unavailable): %s", str(e).splitlines()[0])
