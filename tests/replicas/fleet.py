"""Real `meterline serve` replicas on one PostgreSQL database, the load they carry, and a relay
between them and the database that a test can cut."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import sqlalchemy as sa
import yaml

from tests.conftest import base_config, free_port, proxy_environ, run_cli

WAIT = 60.0  # seconds a test waits for something that should happen much sooner

# What a call cut off by a killed replica raises: openai's SDK reads through httpx, or through
# httpx2 where its newer releases bring it.
try:
    import httpx2

    CUT_OFF: tuple[type[Exception], ...] = (openai.APIError, httpx.HTTPError, httpx2.HTTPError)
except ImportError:
    CUT_OFF = (openai.APIError, httpx.HTTPError)


def wait_for(what: str, check: Any, timeout: float = WAIT) -> Any:
    """Poll `check()` until it returns something truthy; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


class Replica:
    """One `meterline serve` process with its own config file, port and spool folder."""

    def __init__(self, tmp_path: Path, name: str, upstream_url: str, database: str, **overrides: Any):
        self.name = name
        self.dir = tmp_path / name
        self.dir.mkdir()
        server = {"spool_dir": str(self.dir / "spool"), **overrides.pop("server", {})}
        self.cfg = base_config(self.dir, upstream_url, database=database, server=server, **overrides)
        self.config_path = self.dir / "config.yaml"
        self.config_path.write_text(yaml.safe_dump(self.cfg))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.dir / "serve.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, log_level: str = "info") -> Replica:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "meterline", "serve", "--config", str(self.config_path), "--port", str(self.port), "--log-level", log_level],
            env={**os.environ, **proxy_environ()},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        wait_for(f"{self.name} to serve", lambda: self._up() or self._died())
        return self

    def _up(self) -> bool:
        try:
            return httpx.get(self.url + "/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def _died(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n{self.log()}")
        return False

    def health(self) -> dict[str, Any]:
        return httpx.get(self.url + "/healthz", timeout=5).json()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def terminate(self) -> int:
        """SIGTERM, then the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=WAIT)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=WAIT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, "--config", str(self.config_path), check=check)

    def create_key(self, team: str = "nlp") -> tuple[str, str]:
        """A key made with the CLI: (id, secret)."""
        out = json.loads(self.cli("keys", "create", "--team", team, "--json").stdout)
        return out["id"], out["key"]

    def client(self, key: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key=key, max_retries=0, timeout=30)


class Load:
    """Client threads calling the replicas round-robin with the openai SDK, streamed and not.

    `acknowledged` holds the call id of every call whose whole answer a client received: the
    calls the ledger must hold, once each.
    """

    def __init__(self, replicas: list[Replica], key: str, threads: int = 8, content: str = "sim:chunks=4"):
        self.replicas = replicas
        self.key = key
        self.content = content
        self.acknowledged: list[str] = []
        self.refused: list[str] = []  # what went wrong, for calls a client did not receive
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._work, args=(i,), daemon=True) for i in range(threads)]

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=WAIT)

    def count(self) -> int:
        with self._lock:
            return len(self.acknowledged)

    def wait_for_calls(self, n: int) -> None:
        start = self.count()
        wait_for(f"{n} more acknowledged calls", lambda: self.count() >= start + n)

    def _work(self, i: int) -> None:
        clients = {r.url: r.client(self.key) for r in self.replicas}
        n = i
        while not self._stop.is_set():
            n += 1
            replica = self.replicas[n % len(self.replicas)]
            try:
                call_id = self._call(clients[replica.url], stream=n % 2 == 0)
            except CUT_OFF as e:
                with self._lock:
                    self.refused.append(f"{replica.name}: {type(e).__name__}")
                time.sleep(0.05)
                continue
            if call_id:
                with self._lock:
                    self.acknowledged.append(call_id)

    def _call(self, client: openai.OpenAI, stream: bool) -> str | None:
        messages = [{"role": "user", "content": self.content}]
        if stream:
            with client.chat.completions.with_streaming_response.create(
                model="gpt-4o-mini", messages=messages, stream=True  # type: ignore[arg-type]
            ) as r:
                call_id = r.headers["x-meterline-call-id"]
                body = r.read()
            return call_id if body.rstrip().endswith(b"data: [DONE]") else None
        raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=messages)  # type: ignore[arg-type]
        raw.parse()
        return raw.headers["x-meterline-call-id"]


def ledger_state(engine: sa.Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        ids = [r[0] for r in conn.execute(sa.text("SELECT call_id FROM events"))]
        events = conn.execute(sa.text("SELECT count(*), coalesce(sum(cost_pico), 0) FROM events")).one()
        rollups = conn.execute(
            sa.text("SELECT coalesce(sum(requests), 0), coalesce(sum(cost_pico), 0) FROM rollups_hourly")
        ).one()
    return {"ids": ids, "events": tuple(events), "rollups": tuple(rollups)}


def assert_each_once(engine: sa.Engine, acknowledged: list[str]) -> dict[str, Any]:
    """Every acknowledged call is in the ledger exactly once, and the rollups agree with it."""
    state = ledger_state(engine)
    ids = state["ids"]
    assert len(ids) == len(set(ids))
    missing = set(acknowledged) - set(ids)
    assert not missing, f"{len(missing)} of {len(acknowledged)} acknowledged calls are not in the ledger"
    assert len(acknowledged) == len(set(acknowledged))
    assert state["rollups"] == state["events"], "rollups disagree with the events"
    return state


class Relay:
    """A TCP relay in front of PostgreSQL. `cut()` drops every connection and refuses new ones
    (as a database host that went away); `hang()` accepts connections and holds every byte (a
    host that stopped answering); `restore()` lets them through again."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1"):
        self.target = (target_host, target_port)
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._flowing = asyncio.Event()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.restore()

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=WAIT)

    def restore(self) -> None:
        async def listen() -> None:
            if self._server is None:
                self._server = await asyncio.start_server(self._pipe, "127.0.0.1", self.port, reuse_address=True)
            self._flowing.set()

        self._run(listen())

    def hang(self) -> None:
        async def hold() -> None:
            self._flowing.clear()

        self._run(hold())

    def cut(self) -> None:
        async def drop() -> None:
            if self._server is not None:
                self._server.close()
                self._server = None
            for w in list(self._writers):
                w.transport.abort()
            self._writers.clear()

        self._run(drop())

    def close(self) -> None:
        self.cut()

        async def finish() -> None:  # the pipes still waiting, so none is left pending
            pipes = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in pipes:
                t.cancel()
            await asyncio.gather(*pipes, return_exceptions=True)

        self._run(finish())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=WAIT)
        self._loop.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        await self._flowing.wait()
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))

        async def copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    await self._flowing.wait()
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(copy(reader, up_writer), copy(up_reader, writer))
        self._writers.difference_update((writer, up_writer))
