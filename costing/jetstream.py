"""The spool kept in NATS JetStream (`server.spool_url`), for replicas without a persistent disk.

The proxy publishes each finished call's event to the stream and the response's last bytes
wait for the broker's acknowledgement (`JetStreamSpool.append` returns what to wait for): from
then on the event is in the stream, on the broker's disk, whatever becomes of the replica.
Every replica consumes the stream into the ledger through one durable pull consumer that all
of them share, a work queue (`StreamWriter`): a batch is acknowledged only once its ledger
transaction committed, so events a replica took and did not write (it was killed) go to
another after `redeliver_seconds`. An event delivered twice is written once: the ledger's
insert is idempotent on `call_id`, and the broker drops a second publish of the same call id
(`Nats-Msg-Id`) within its duplicate window.

Publishes are batched the way the disk spool batches its fsyncs: `append` only queues the
event; one task publishes everything queued since its last turn and a second awaits the acks,
so a burst of calls costs one socket write and one wait. A publish not acknowledged within
`PUBLISH_SECONDS` (the broker is away) is published again, under the same message id, until
it is.

Everything here runs on the serving process's event loop (nats-py is asyncio); the ledger
writes go to a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import nats
import nats.errors
import nats.js.errors
import orjson
import sqlalchemy as sa
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api

from .config import JetStreamConfig
from .errors import ConfigError
from .ingest import write_rows
from .spool import decode_event

log = logging.getLogger("meterline.ledger")

PUBLISH_SECONDS = 2.0  # a publish not acknowledged by then is sent again
DUPLICATE_WINDOW = 120.0  # seconds the broker remembers a call id, to drop a second publish of it
MSG_ID = "Nats-Msg-Id"


class SpoolUnavailable(Exception):
    """The broker has not acknowledged an event in time: the response must not complete."""


async def connect(url: str, cfg: JetStreamConfig, *, name: str = "meterline") -> tuple[NATS, JetStreamContext]:
    """A connection to the broker with the stream and its consumer in place (made if missing).

    Raises ConfigError (`server.spool_url: ...`, one line) when the broker cannot be reached,
    has no JetStream, or holds a stream of that name that cannot take this configuration.
    """
    servers = [u.strip() for u in url.split(",") if u.strip()]
    nc = NATS()

    async def disconnected() -> None:
        if not (nc.is_closed or nc.is_draining):  # not our own close
            log.error("disconnected from the NATS broker; reconnecting")

    try:
        await nc.connect(
            servers,
            name=name,
            connect_timeout=max(1, round(cfg.connect_timeout_seconds)),  # nats-py takes whole seconds
            allow_reconnect=True,
            max_reconnect_attempts=1,  # the first connection: fail rather than wait for ever
            reconnect_time_wait=1,
            pending_size=64 * 1024 * 1024,  # what is published while reconnecting, held for the broker
            error_cb=_log_error,
            disconnected_cb=disconnected,
            reconnected_cb=_log_reconnected,
        )
    except (OSError, TimeoutError, nats.errors.Error) as e:
        raise ConfigError(f"cannot reach the NATS broker at {url}: {_short(e)}", key="server.spool_url") from None
    nc.options["max_reconnect_attempts"] = -1  # once connected: the broker may come back at any time
    js = nc.jetstream(timeout=cfg.connect_timeout_seconds)
    try:
        await _ensure_stream(js, cfg)
    except BaseException:
        await nc.close()
        raise
    return nc, js


async def _ensure_stream(js: JetStreamContext, cfg: JetStreamConfig) -> None:
    stream = api.StreamConfig(
        name=cfg.stream,
        subjects=[cfg.subject, cfg.rejected_subject],
        retention=api.RetentionPolicy.WORK_QUEUE if cfg.retention == "workqueue" else api.RetentionPolicy.LIMITS,
        storage=api.StorageType.FILE,
        num_replicas=cfg.replicas,
        max_age=cfg.max_age_hours * 3600,
        max_bytes=cfg.max_bytes,
        discard=api.DiscardPolicy.NEW,  # a full stream refuses events rather than dropping old ones
        duplicate_window=DUPLICATE_WINDOW,
    )
    consumer = api.ConsumerConfig(
        durable_name=cfg.consumer,
        filter_subject=cfg.subject,
        ack_policy=api.AckPolicy.EXPLICIT,
        ack_wait=cfg.redeliver_seconds,
        deliver_policy=api.DeliverPolicy.ALL,
        max_deliver=-1,
        max_ack_pending=-1,
    )
    try:
        try:
            await js.stream_info(cfg.stream)
            await js.update_stream(stream)
        except nats.js.errors.NotFoundError:
            await js.add_stream(stream)
        await js.add_consumer(cfg.stream, consumer)
    except nats.js.errors.APIError as e:
        raise ConfigError(f"JetStream stream {cfg.stream!r}: {e.description or e}", key="server.spool_url") from None
    except (nats.errors.NoRespondersError, nats.errors.TimeoutError) as e:
        raise ConfigError(f"the NATS broker does not answer for JetStream (is it run with -js?): {_short(e)}",
                          key="server.spool_url") from None  # fmt: skip


@dataclass(slots=True)
class _Queued:
    call_id: str
    data: bytes
    done: asyncio.Future[None]
    acks: list[asyncio.Future[Any]] = field(default_factory=list)


class JetStreamSpool:
    """The publishing side: `append` queues an event and returns a future that completes once
    the stream holds it. Build with `await JetStreamSpool.open(url, cfg)`, on the serving loop.

    `healthy` is False while the broker is unreachable or has not acknowledged an event for
    `PUBLISH_SECONDS`; the proxy refuses new calls then (503), since it has nowhere durable to
    put their events (docs/durability.md).
    """

    def __init__(self, nc: NATS, js: JetStreamContext, cfg: JetStreamConfig):
        self.nc, self.js, self.cfg = nc, js, cfg
        self.last_error = ""
        self.backlog = 0  # the stream's events not yet in the ledger, as the writer last saw it
        self.published = 0
        self._loop = asyncio.get_running_loop()
        self._queue: list[_Queued] = []
        self._unacked = 0
        self._failing_since: float | None = None
        self._wake = asyncio.Event()
        self._acks: set[asyncio.Task[None]] = set()
        self._task = asyncio.create_task(self._publish_loop(), name="meterline-spool-publish")

    @classmethod
    async def open(cls, url: str, cfg: JetStreamConfig) -> JetStreamSpool:
        nc, js = await connect(url, cfg, name="meterline-serve")
        return cls(nc, js, cfg)

    # -- the hot path ---------------------------------------------------------------------

    def append(self, event: dict[str, Any]) -> asyncio.Future[None]:
        """Queue the event; the future completes when the broker has acknowledged it."""
        done: asyncio.Future[None] = self._loop.create_future()
        done.add_done_callback(_retrieve)
        self._queue.append(_Queued(str(event["call_id"]), orjson.dumps(event), done))
        self._unacked += 1
        if not self._wake.is_set():
            self._wake.set()
        return done

    def pending(self) -> int:
        return self.backlog + self._unacked

    @property
    def healthy(self) -> bool:
        return self.nc.is_connected and self._failing_since is None

    @property
    def state(self) -> str:
        """"ok", else why not, in a few words."""
        if not self.nc.is_connected:
            return "the NATS broker is unreachable" + (f" ({self.last_error})" if self.last_error else "")
        if self._failing_since is not None:
            return f"the NATS broker has not acknowledged events for {time.monotonic() - self._failing_since:.0f} s"
        return "ok"

    # -- publishing -----------------------------------------------------------------------

    async def _publish_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self._queue:
                continue
            if not self.nc.is_connected:  # nats-py would buffer, but a failed publish leaks its slot
                await asyncio.sleep(0.1)
                self._wake.set()
                continue
            batch, self._queue = self._queue, []
            try:
                for item in batch:
                    item.acks.append(
                        await self.js.publish_async(self.cfg.subject, item.data, headers={MSG_ID: item.call_id})
                    )
            except (nats.errors.Error, OSError) as e:
                self._failed(batch, e)
                continue
            task = asyncio.create_task(self._await_acks(batch))
            self._acks.add(task)
            task.add_done_callback(self._acks.discard)

    async def _await_acks(self, batch: list[_Queued]) -> None:
        latest = [item.acks[-1] for item in batch]
        await asyncio.wait(latest, timeout=PUBLISH_SECONDS)
        again: list[_Queued] = []
        error: BaseException | None = None
        for item in batch:
            if self._acked(item):
                continue
            again.append(item)
            ack = item.acks[-1]
            if ack.done():
                error = ack.exception()
        for item in batch:
            for ack in item.acks:
                ack.cancel()  # frees nats-py's slot for an ack that will never come
            item.acks.clear()
        if again:
            self._failed(again, error or TimeoutError("no acknowledgement"))
        else:
            self._failing_since, self.last_error = None, ""

    def _acked(self, item: _Queued) -> bool:
        """Whether any of the item's publishes was acknowledged; completes its future if so."""
        for ack in item.acks:
            if ack.done() and not ack.cancelled() and ack.exception() is None:
                if not item.done.done():
                    item.done.set_result(None)
                self._unacked -= 1
                self.published += 1
                return True
        return False

    def _failed(self, items: list[_Queued], error: BaseException) -> None:
        """Publish these again (first, in their order) once the broker is back."""
        if self._failing_since is None:
            self._failing_since = time.monotonic()
            log.error("the NATS broker did not acknowledge %d events; retrying: %s", len(items), _short(error))
        self.last_error = _short(error)
        self._queue[:0] = items
        self._loop.call_later(0.2, self._wake.set)

    async def close(self, timeout: float = 10.0) -> None:
        """Wait (up to `timeout`) for the events queued to be acknowledged, then disconnect."""
        deadline = time.monotonic() + timeout
        while self._unacked and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self._unacked:
            log.error("%d events were never acknowledged by the NATS broker; they are lost", self._unacked)
        self._task.cancel()
        for t in list(self._acks):
            t.cancel()
        await asyncio.gather(self._task, *self._acks, return_exceptions=True)
        await self.nc.close()


class StreamWriter:
    """The consuming side: takes batches from the stream's shared durable consumer, writes them
    into the ledger (on a thread) and acknowledges them once committed. The same attributes as
    ingest.LedgerWriter (`degraded`, `stalled`, `last_error`, `written`, `on_written`).

    Build with `await StreamWriter.open(engine, url, cfg)`, on the loop; `start()` begins
    consuming, `await stop()` finishes the batch in hand and disconnects.
    """

    def __init__(self, engine: sa.Engine, nc: NATS, sub: JetStreamContext.PullSubscription, cfg: JetStreamConfig,
                 interval: float, spool: JetStreamSpool | None = None):  # fmt: skip
        self.engine, self.nc, self.sub, self.cfg = engine, nc, sub, cfg
        self.js = nc.jetstream()
        self.interval = interval
        self.spool = spool
        self.degraded = False
        self.last_error = ""
        self.written = 0
        self.on_written: list[Callable[[list[str]], None]] = []
        self.stall_seconds = max(5.0, 20 * interval)
        self._progress: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._turn = asyncio.Lock()  # one fetch at a time on the subscription (the loop, a flush)

    @classmethod
    async def open(cls, engine: sa.Engine, url: str, cfg: JetStreamConfig, interval: float,
                   spool: JetStreamSpool | None = None) -> StreamWriter:  # fmt: skip
        nc, js = await connect(url, cfg, name="meterline-ledger-writer")
        try:
            sub = await js.pull_subscribe_bind(durable=cfg.consumer, stream=cfg.stream)
        except BaseException:
            await nc.close()
            raise
        return cls(engine, nc, sub, cfg, interval, spool)

    @property
    def stalled(self) -> bool:
        progress = self._progress
        return progress is not None and time.monotonic() - progress > self.stall_seconds

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="meterline-ledger-stream")

    async def stop(self, flush_seconds: float = 10.0) -> None:
        """Stop consuming, write what the stream holds (for up to `flush_seconds`: the rest
        waits there for the next writer), disconnect."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        try:
            await asyncio.wait_for(self.flush(), timeout=flush_seconds)
        except Exception as e:  # noqa: BLE001 - the events stay in the stream
            log.warning("events left in the NATS stream for the next writer: %s", _short(e))
        with contextlib.suppress(nats.errors.Error):
            await self.sub.unsubscribe()
        await self.nc.close()

    async def flush(self) -> int:
        """Write whatever the stream holds now; returns how many events were new."""
        n = 0
        while True:
            async with self._turn:
                msgs = await self._fetch(timeout=0.2)
                if not msgs:
                    return n
                n += await self._write(msgs)

    async def _run(self) -> None:
        backoff = self.interval
        last_info = 0.0
        while True:
            try:
                async with self._turn:
                    msgs = await self._fetch(timeout=max(self.interval, 0.5))
                    if msgs:
                        await self._write(msgs)
                if 0 < len(msgs) < self.cfg.batch:
                    # A batch that was not full: wait for the next one to fill for a flush
                    # interval, as the disk spool's writer does, rather than one transaction
                    # per event at a low rate (bench/RESULTS.md).
                    await asyncio.sleep(self.interval)
                if time.monotonic() - last_info > 1.0 and self.spool is not None:
                    last_info = time.monotonic()
                    info = await self.js.consumer_info(self.cfg.stream, self.cfg.consumer)
                    self.spool.backlog = info.num_pending + info.num_ack_pending
            except asyncio.CancelledError:
                raise
            except (sa.exc.SQLAlchemyError, OSError) as e:
                if not self.degraded:
                    log.error("ledger database unavailable; events stay in the NATS stream: %s", _short(e))
                self.degraded, self.last_error = True, _short(e)
                backoff = min(backoff * 2, 5.0)
                await asyncio.sleep(backoff)
                continue
            except (nats.errors.Error, TimeoutError) as e:  # the broker is away: nats-py reconnects
                self.last_error = _short(e)
                await asyncio.sleep(min(backoff * 2, 1.0))
                continue
            except Exception as e:  # noqa: BLE001 - a dead writer task would stop the ledger silently
                log.exception("ledger writer failed; events stay in the stream and are retried")
                self.degraded, self.last_error = True, _short(e)
                await asyncio.sleep(min(backoff * 2, 5.0))
                continue
            if self.degraded:
                log.warning("ledger database is back; events in the stream written")
            self.degraded, self.last_error, backoff = False, "", self.interval

    async def _fetch(self, timeout: float) -> list[Msg]:
        try:
            return await self.sub.fetch(self.cfg.batch, timeout=timeout)
        except TimeoutError:  # nats-py's own, or asyncio's from inside fetch: nothing came
            return []

    async def _write(self, msgs: list[Msg]) -> int:
        """Write a batch and acknowledge it; unacknowledged (redelivered later) if the database
        refuses. Events refused for what they hold go to the rejected subject."""
        rows: list[dict[str, Any]] = []
        junk: list[Msg] = []
        for m in msgs:
            row = decode_event(m.data)
            if row is None:
                junk.append(m)
            else:
                rows.append(row)
        self._progress = time.monotonic()
        try:
            n, refused = await asyncio.to_thread(write_rows, self.engine, rows, f"stream {self.cfg.stream}")
        except BaseException:
            for m in msgs:
                with contextlib.suppress(nats.errors.Error):
                    await m.nak(delay=1.0)
            raise
        finally:
            self._progress = None
        for row in refused:
            await self.js.publish(self.cfg.rejected_subject, orjson.dumps(row), headers={MSG_ID: f"rejected-{row.get('call_id')}"})
        if refused:
            log.error("%d events refused by the ledger kept in %s", len(refused), self.cfg.rejected_subject)
        for m in junk:
            log.error("a message in %s is not an event; dropped: %r", self.cfg.subject, m.data[:200])
        for m in msgs:
            await m.ack()
        self.written += n
        ids = [str(r["call_id"]) for r in rows]
        for observer in self.on_written:
            observer(ids)
        return n


async def drain(engine: sa.Engine, url: str, cfg: JetStreamConfig, *, wait: float | None = None) -> int:
    """Write into the ledger every event the stream held when this started, whoever does it
    (this call, or a live replica's writer): what a command that reads the ledger runs first.

    Returns how many events this call wrote. Events that a replica took and has not
    acknowledged (it may have just been killed) come back after `redeliver_seconds`, so this
    waits up to that long (plus a margin, or `wait`) for the consumer's acknowledged floor to
    pass the stream's last event as of the start; raises TimeoutError if it does not.
    """
    nc, js = await connect(url, cfg, name="meterline-cli")
    try:
        target = (await js.stream_info(cfg.stream)).state.last_seq
        sub = await js.pull_subscribe_bind(durable=cfg.consumer, stream=cfg.stream)
        writer = StreamWriter(engine, nc, sub, cfg, interval=0.1)
        deadline = time.monotonic() + (wait if wait is not None else cfg.redeliver_seconds + 5)
        n = 0
        while True:
            n += await writer.flush()
            info = await js.consumer_info(cfg.stream, cfg.consumer)
            if info.ack_floor is None or (info.ack_floor.stream_seq or 0) >= target or _none_left(info):
                return n
            if time.monotonic() > deadline:
                raise TimeoutError(f"{info.num_ack_pending} events taken by a writer are not in the ledger yet")
            await asyncio.sleep(0.2)
    finally:
        await nc.close()


def _none_left(info: api.ConsumerInfo) -> bool:
    return not info.num_pending and not info.num_ack_pending


def _retrieve(f: asyncio.Future[None]) -> None:
    if not f.cancelled():
        f.exception()  # a failure nobody waited for (the client had gone) is not logged as unretrieved


async def _log_error(e: Exception) -> None:
    log.debug("NATS: %s", _short(e))


async def _log_reconnected() -> None:
    log.warning("reconnected to the NATS broker")


def _short(e: BaseException) -> str:
    text = str(e).splitlines()[0][:200] if str(e) else ""
    return text or type(e).__name__


__all__ = ["JetStreamSpool", "SpoolUnavailable", "StreamWriter", "connect", "drain"]
