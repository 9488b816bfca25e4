"""A response the client received in full is in the ledger even if the proxy is SIGKILLed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import openai
import sqlalchemy as sa
import yaml

from meterline.costing import create_engine
from tests.conftest import base_config, free_port, proxy_environ, run_cli


def start_serve(config_path, port):
    env = {**os.environ, **proxy_environ()}
    proc = subprocess.Popen(
        [sys.executable, "-m", "meterline", "serve", "--config", str(config_path), "--port", str(port), "--log-level", "warning"],
        env=env,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("meterline serve did not come up")


def test_sigkill_under_load_loses_no_completed_call(tmp_path, upstream):
    cfg = base_config(tmp_path, upstream.url, server={"flush_interval_ms": 2000})  # most events still spooled
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(cfg))
    key = json.loads(run_cli("keys", "create", "--team", "nlp", "--json", "--config", str(config_path)).stdout)["key"]
    port = free_port()
    proc = start_serve(config_path, port)

    received: list[str] = []
    stop = threading.Event()

    def worker(stream: bool) -> None:
        c = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0)
        while not stop.is_set():
            try:
                if stream:
                    with c.chat.completions.with_streaming_response.create(
                        model="gpt-4o-mini", messages=[{"role": "user", "content": "sim:chunks=5"}], stream=True
                    ) as r:
                        call_id = r.headers["x-meterline-call-id"]
                        body = r.read()
                    if body.rstrip().endswith(b"data: [DONE]"):
                        received.append(call_id)
                else:
                    raw = c.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
                    raw.parse()
                    received.append(raw.headers["x-meterline-call-id"])
            except (openai.APIError, httpx.HTTPError):
                return

    threads = [threading.Thread(target=worker, args=(i % 2 == 0,)) for i in range(8)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stop.set()
    for t in threads:
        t.join(timeout=10)
    assert len(received) > 50

    # Nothing was flushed to the database yet; a restart replays the spool.
    proc = start_serve(config_path, port)
    try:
        engine = create_engine(cfg["database"])
        with engine.connect() as conn:
            recorded = {r[0] for r in conn.execute(sa.text("SELECT call_id FROM events"))}
            count = conn.execute(sa.text("SELECT count(*) FROM events")).scalar()
            rollup = conn.execute(sa.text("SELECT sum(requests) FROM rollups_hourly")).scalar()
        missing = set(received) - recorded
        assert not missing, f"{len(missing)} completed calls missing from the ledger"
        assert count == len(recorded) == rollup  # once each, and the rollups agree
    finally:
        proc.terminate()
        proc.wait(timeout=30)
