"""A response the client received in full is in the ledger even if the proxy is SIGKILLed: in
every report on that host at once, with no restart, and through a sibling process's adoption
when several serve one spool root (`--workers`, or several `meterline serve` from one config).
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest
import sqlalchemy as sa
import yaml

from meterline.costing import create_engine
from tests.conftest import base_config, free_port, proxy_environ, run_cli
from tests.replicas.fleet import wait_for


def start_serve(config_path: Path, port: int, *extra: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, **proxy_environ()}
    proc = subprocess.Popen(
        [sys.executable, "-m", "meterline", "serve", "--config", str(config_path), "--port", str(port), "--log-level", "warning", *extra],
        env=env,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("meterline serve did not come up")


class Load:
    """8 clients, half of them streaming, each noting the calls it received in full."""

    def __init__(self, ports: list[int], key: str, clients: int = 8):
        self.received: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._work, args=(i, ports[i % len(ports)], key)) for i in range(clients)]
        for t in self._threads:
            t.start()

    def _work(self, i: int, port: int, key: str) -> None:
        c = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0)
        while not self._stop.is_set():
            try:
                if i % 2 == 0:
                    with c.chat.completions.with_streaming_response.create(
                        model="gpt-4o-mini", messages=[{"role": "user", "content": "sim:chunks=5"}], stream=True
                    ) as r:
                        call_id = r.headers["x-meterline-call-id"]
                        body = r.read()
                    if body.rstrip().endswith(b"data: [DONE]"):
                        self.received.append(call_id)
                else:
                    raw = c.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
                    raw.parse()
                    self.received.append(raw.headers["x-meterline-call-id"])
            except Exception:  # noqa: BLE001 - a process is killed under it on purpose; only calls received in full count
                if len(self._threads) == 1 or self._stop.is_set():
                    return
                time.sleep(0.05)  # a worker of several died: the port is still served by the rest

    def stop(self) -> list[str]:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)
        return list(self.received)


def setup(tmp_path: Path, upstream_url: str) -> tuple[dict, Path, str]:
    cfg = base_config(tmp_path, upstream_url, server={"flush_interval_ms": 2000})  # most events still spooled
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(cfg))
    key = json.loads(run_cli("keys", "create", "--team", "nlp", "--json", "--config", str(config_path)).stdout)["key"]
    return cfg, config_path, key


def ledger_ids(database: str) -> tuple[set[str], int, int]:
    engine = create_engine(database)
    try:
        with engine.connect() as conn:
            ids = {r[0] for r in conn.execute(sa.text("SELECT call_id FROM events"))}
            count = conn.execute(sa.text("SELECT count(*) FROM events")).scalar()
            rollup = conn.execute(sa.text("SELECT coalesce(sum(requests), 0) FROM rollups_hourly")).scalar()
    finally:
        engine.dispose()
    return ids, count, rollup


def test_after_a_sigkill_every_acknowledged_call_is_in_the_export_at_once_without_a_restart(tmp_path, upstream):
    cfg, config_path, key = setup(tmp_path, upstream.url)
    port = free_port()
    proc = start_serve(config_path, port)
    load = Load([port], key)
    wait_for("100 acknowledged calls", lambda: len(load.received) >= 100, timeout=120)
    (writer,) = _writer_children(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    received = load.stop()
    wait_for("the writer process to exit with the server", lambda: not _running(writer), timeout=30)

    month = time.strftime("%Y-%m", time.gmtime())
    out = run_cli("export", "events", "--month", month, "--format", "jsonl", "--config", str(config_path)).stdout
    exported = [json.loads(line)["call_id"] for line in out.splitlines()]
    missing = set(received) - set(exported)
    assert not missing, f"{len(missing)} of {len(received)} acknowledged calls missing from the export"
    assert len(exported) == len(set(exported))  # once each
    ids, count, rollup = ledger_ids(cfg["database"])
    assert count == len(ids) == rollup  # and the rollups agree
    assert not any((tmp_path / "spool").iterdir())  # the dead process's folder is gone once written


def test_two_serve_processes_share_one_config_and_a_killed_ones_calls_reach_the_ledger_through_the_other(tmp_path, upstream):
    cfg, config_path, key = setup(tmp_path, upstream.url)
    ports = [free_port(), free_port()]
    victim, survivor = (start_serve(config_path, p) for p in ports)
    try:
        load = Load(ports, key)
        wait_for("100 acknowledged calls", lambda: len(load.received) >= 100, timeout=120)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        received = load.stop()
        # No CLI here (it would adopt the folder itself): the survivor's writer must.
        wait_for("the killed process's calls in the ledger", lambda: set(received) <= ledger_ids(cfg["database"])[0], timeout=60)
        ids, count, rollup = ledger_ids(cfg["database"])
        assert count == len(ids) == rollup
    finally:
        survivor.terminate()
        survivor.wait(timeout=30)


def test_workers_serve_one_port_and_a_killed_worker_is_replaced_and_its_calls_adopted(tmp_path, upstream):
    cfg, config_path, key = setup(tmp_path, upstream.url)
    port = free_port()
    proc = start_serve(config_path, port, "--workers", "2")
    try:
        wait_for("two workers", lambda: len(_children(proc.pid)) == 2, timeout=60)
        load = Load([port], key)
        wait_for("100 acknowledged calls", lambda: len(load.received) >= 100, timeout=120)
        os.kill(_children(proc.pid)[0], signal.SIGKILL)
        wait_for("100 more calls", lambda: len(load.received) >= 200, timeout=120)
        received = load.stop()
        wait_for("the killed worker's calls in the ledger", lambda: set(received) <= ledger_ids(cfg["database"])[0], timeout=60)
        wait_for("the worker replaced", lambda: len(_children(proc.pid)) == 2, timeout=60)
    finally:
        proc.terminate()  # SIGTERM drains every worker
        assert proc.wait(timeout=60) == 0
    ids, count, rollup = ledger_ids(cfg["database"])
    assert set(received) <= ids and count == len(ids) == rollup


def test_a_killed_writer_process_is_replaced_and_its_calls_land_once(tmp_path, upstream):
    cfg = base_config(tmp_path, upstream.url, server={"flush_interval_ms": 20})  # the child is mostly mid-write
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(cfg))
    key = json.loads(run_cli("keys", "create", "--team", "nlp", "--json", "--config", str(config_path)).stdout)["key"]
    proc = start_serve(config_path, free_port())
    port = int(proc.args[proc.args.index("--port") + 1])
    try:
        load = Load([port], key)
        for n in (100, 200, 300):  # killed three times under load
            wait_for(f"{n} acknowledged calls", lambda n=n: len(load.received) >= n, timeout=120)
            wait_for("a writer process", lambda: len(_writer_children(proc.pid)) == 1, timeout=60)
            os.kill(_writer_children(proc.pid)[0], signal.SIGKILL)
        wait_for("400 acknowledged calls", lambda: len(load.received) >= 400, timeout=120)
        received = load.stop()
        wait_for("every acknowledged call in the ledger", lambda: set(received) <= ledger_ids(cfg["database"])[0], timeout=60)
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").json()["status"] == "ok"
    finally:
        proc.terminate()
        assert proc.wait(timeout=60) == 0
    ids, count, rollup = ledger_ids(cfg["database"])
    assert set(received) <= ids and count == len(ids) == rollup  # nothing lost, nothing counted twice


def _writer_children(pid: int) -> list[int]:
    """The ledger writer processes `pid` started (server.ledger_writer: process)."""
    out = subprocess.run(["ps", "-ww", "-o", "pid=,args=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(line.split()[0]) for line in out.splitlines() if "writer_process" in line]


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _children(pid: int) -> list[int]:
    """The worker processes of a `--workers` server (uvicorn's supervisor is their parent)."""
    out = subprocess.run(["ps", "-ww", "-o", "pid=,args=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(line.split()[0]) for line in out.splitlines() if "spawn_main" in line]


def test_a_spool_disk_that_refuses_writes_turns_new_calls_away_and_loses_none_it_served(tmp_path, upstream, postgres_url):
    # The ledger on PostgreSQL, the spool on the local disk: the disk filling up on a replica.
    cfg = base_config(tmp_path, upstream.url, database=postgres_url)
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(cfg))
    key = json.loads(run_cli("keys", "create", "--team", "nlp", "--json", "--config", str(config_path)).stdout)["key"]
    port = free_port()
    proc = start_serve(config_path, port)
    c = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0)

    def ask() -> str:
        raw = c.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
        raw.parse()
        return raw.headers["x-meterline-call-id"]

    def disk(refuses: bool) -> None:  # the kernel refuses the serving process any file past 1 byte
        hard = resource.prlimit(proc.pid, resource.RLIMIT_FSIZE)[1]
        resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (1 if refuses else hard, hard))

    def refused() -> None:
        with pytest.raises(openai.APIStatusError) as e:
            ask()
        assert (e.value.status_code, e.value.body["code"]) == (503, "spool_unavailable")

    try:
        served = [ask()]
        disk(refuses=True)
        served.append(ask())  # its event is refused by the disk: answered, and held in memory
        health = httpx.get(f"http://127.0.0.1:{port}/healthz")
        assert health.status_code == 503 and health.json()["spool"] == "disk"
        assert "not writable" in health.json()["reason"]
        refused()  # nowhere durable to record it: turned away before the upstream
        disk(refuses=False)
        wait_for("the spool to take writes again", lambda: httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200)
        served.append(ask())
        wait_for("the calls served so far in the ledger", lambda: set(served) <= ledger_ids(postgres_url)[0])

        disk(refuses=True)
        served.append(ask())
        refused()
        proc.terminate()  # a clean stop with an event only in memory: it goes straight into the ledger
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:  # the test failed midway
            proc.kill()
            proc.wait(timeout=60)
    ids, count, rollup = ledger_ids(postgres_url)
    assert ids == set(served) and count == rollup == len(served)  # every call served once, none refused


def test_an_unwritable_spool_root_is_one_line_not_a_traceback(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    cfg = base_config(tmp_path, "http://127.0.0.1:9", server={"spool_dir": str(blocker / "spool")})
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    res = run_cli("serve", "--config", str(tmp_path / "config.yaml"), "--port", str(free_port()), check=False)
    assert res.returncode != 0
    assert res.stderr.startswith("meterline: server.spool_dir: cannot create") and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_a_database_down_at_start_is_one_line_not_a_traceback(tmp_path):
    # Keys are read from the ledger, so nothing could be authenticated: serve refuses to start.
    cfg = base_config(tmp_path, "http://127.0.0.1:9")
    cfg["database"] = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/test"  # nothing listens there
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    for workers in ("1", "2"):
        res = run_cli("serve", "--config", str(tmp_path / "config.yaml"), "--port", str(free_port()), "--workers", workers,
                      check=False)  # fmt: skip
        assert res.returncode != 0
        assert res.stderr.startswith("meterline: cannot open the ledger database: connection failed"), res.stderr
        assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
