"""`meterline serve` says at start-up which providers have no key in the environment."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import yaml

from tests.conftest import base_config, free_port, proxy_environ


def test_serve_warns_once_per_provider_whose_key_variable_is_unset(tmp_path, upstream):
    cfg = base_config(tmp_path, upstream.url)
    cfg["providers"]["spare"] = {"base_url": upstream.url + "/v1", "api_key_env": "MTL_TEST_UNSET_KEY"}
    cfg["providers"]["local"] = {"base_url": upstream.url + "/v1"}  # no key asked for: no warning
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {k: v for k, v in {**os.environ, **proxy_environ()}.items() if k != "MTL_TEST_UNSET_KEY"}
    port, log = free_port(), tmp_path / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "meterline", "serve", "--config", str(path), "--port", str(port), "--log-level", "warning"],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    warned = [ln for ln in log.read_text().splitlines() if "is not set" in ln]
    assert len(warned) == 1, log.read_text()
    assert "provider 'spare': $MTL_TEST_UNSET_KEY is not set" in warned[0] and "WARNING" in warned[0]
