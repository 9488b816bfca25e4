"""The processes a benchmark run measures: the mock upstream and the proxies in front of it.

Each target is its own OS process, started the way a user would start it, timed from spawn to
its first successful chat completion (start-up time) and sampled for resident memory (its
process tree) after every load run.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LITELLM_VENV = ROOT / "bench" / ".venv-litellm"
LITELLM_MASTER_KEY = "sk-bench-master-key"
MOCK_KEY = "sk-bench-mock"
MODEL = "gpt-4o-mini"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_tree(pid: int) -> list[tuple[int, int]]:
    """(pid, parent pid) of `pid` and all its descendants, each parent before its children."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = Path(f"/proc/{d}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
            children.setdefault(ppid, []).append(int(d))
    out, todo = [], [(pid, 0)]
    while todo:
        p = todo.pop(0)
        out.append(p)
        todo.extend((c, p[0]) for c in sorted(children.get(p[0], ())))
    return out


def _tree(pid: int) -> list[int]:
    return [p for p, _ in process_tree(pid)]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of `pid`'s process tree: what a request costs, whatever else the
    machine is doing at the time."""
    total = 0
    for p in _tree(pid):
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    """Resident memory of `pid` and all its descendants (a proxy may fork workers)."""
    total = 0
    for p in _tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


@dataclass
class Target:
    """One HTTP endpoint under test. `url` is the base without /v1; `key` the bearer token."""

    name: str
    label: str
    cmd: list[str]
    port: int
    key: str
    env: dict[str, str] = field(default_factory=dict)
    log: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    startup_s: float = 0.0
    rss_peak: int = 0
    failed: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        out = open(self.log, "wb") if self.log else subprocess.DEVNULL  # noqa: SIM115 - owned by the child
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            self.cmd, env={**os.environ, **self.env}, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
            start_new_session=True,
        )
        deadline = t0 + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                self.failed = f"exited with {self.proc.returncode} during start-up (log: {self.log})"
                return
            if self._one_call():
                self.startup_s = time.perf_counter() - t0
                return
            time.sleep(0.01)
        self.failed = f"not answering after {timeout:.0f} s (log: {self.log})"

    def _one_call(self) -> bool:
        body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}).encode()
        req = urllib.request.Request(
            self.url + "/v1/chat/completions", body,
            {"content-type": "application/json", "authorization": f"Bearer {self.key}"},
        )
        try:
            with urllib.request.urlopen(req, timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def sample_rss(self) -> int:
        rss = rss_bytes(self.proc.pid) if self.proc and self.proc.poll() is None else 0
        self.rss_peak = max(self.rss_peak, rss)
        return rss

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid) if self.proc and self.proc.poll() is None else 0.0

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


def mock(workdir: Path) -> Target:
    port = free_port()
    return Target(
        "direct", "mock directly", [sys.executable, "-m", "meterline.testing.upstream", "--port", str(port), "--no-record"],
        port, MOCK_KEY, log=workdir / "mock.log",
    )


def passthrough(workdir: Path, upstream: str) -> Target:
    port = free_port()
    return Target(
        "passthrough", "bare aiohttp pass-through",
        [sys.executable, str(ROOT / "bench" / "passthrough.py"), "--port", str(port), "--upstream", upstream],
        port, MOCK_KEY, log=workdir / "passthrough.log",
    )


def meterline_config(workdir: Path, upstream: str, *, server: dict[str, Any] | None = None,
                     config: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    """The config the bench runs Meterline with: one model priced, a department and a team with
    budgets (never reached), the SQLite ledger and the spool in `workdir`."""
    return {
        "database": f"sqlite:///{workdir / 'ledger.db'}",
        "providers": {"mock": {"base_url": upstream + "/v1", "api_key_env": "BENCH_MOCK_KEY"}},
        "models": [{"name": MODEL, "provider": "mock"}],
        "prices": [{"model": MODEL, "input_per_mtok": "0.15", "cached_input_per_mtok": "0.075", "output_per_mtok": "0.60"}],
        "departments": [
            {"id": "research", "cost_center": "CC-100", "budget_usd_monthly": 1_000_000,
             "teams": [{"id": "nlp", "budget_usd_monthly": 1_000_000}]},
        ],
        "server": {"spool_dir": str(workdir / "spool"), **(server or {})},
        **(config or {}),
    }  # fmt: skip


def meterline(workdir: Path, upstream: str, *, name: str = "meterline", label: str = "Meterline",
              server: dict[str, Any] | None = None, config: dict[str, Any] | None = None,
              workers: int = 1) -> Target:  # fmt: skip
    """Meterline as users run it (`meterline serve`), metering, budgets and the durable ledger on.
    `server`: settings over the default `server:` (`spool_url`, say); `config`: top-level
    sections in place of the default ones (`prices`, say); `workers`: `serve --workers`;
    `name` names its files."""
    workdir = workdir / name if name != "meterline" else workdir
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    cfg = meterline_config(workdir, upstream, server=server, config=config)
    path = workdir / "meterline.yaml"
    path.write_text(json.dumps(cfg, indent=2))  # JSON is YAML
    env = {"BENCH_MOCK_KEY": MOCK_KEY, "METERLINE_CONFIG": str(path)}
    meterline_bin = [sys.executable, "-m", "meterline"]
    out = subprocess.run(
        [*meterline_bin, "keys", "create", "--team", "nlp", "--name", "bench", "--json"],
        env={**os.environ, **env}, capture_output=True, text=True, check=True, cwd=ROOT,
    )
    key = json.loads(out.stdout)["key"]
    return Target(
        name, label,
        [*meterline_bin, "serve", "--port", str(port), "--log-level", "warning", *(["--workers", str(workers)] if workers > 1 else [])],
        port, key, env=env, log=workdir / "meterline.log",
    )


def litellm(workdir: Path, upstream: str) -> Target | None:
    """The LiteLLM proxy from its own venv (bench/.venv-litellm), one worker, no database."""
    exe = LITELLM_VENV / "bin" / "litellm"
    if not exe.exists():
        return None
    port = free_port()
    cfg = {
        "model_list": [
            {"model_name": MODEL, "litellm_params": {"model": f"openai/{MODEL}", "api_base": upstream + "/v1", "api_key": MOCK_KEY}}
        ],
    }
    path = workdir / "litellm.yaml"
    path.write_text(json.dumps(cfg, indent=2))
    env = {
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_MASTER_KEY": LITELLM_MASTER_KEY,
        "PATH": f"{exe.parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    return Target(
        "litellm", "LiteLLM proxy 1.108.7",
        [str(exe), "--config", str(path), "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"],
        port, LITELLM_MASTER_KEY, env=env, log=workdir / "litellm.log",
    )
