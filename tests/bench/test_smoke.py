"""The benchmark harness still runs end to end (a seconds-long smoke run, no LiteLLM)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT


def test_bench_smoke_run_measures_every_target_and_writes_its_results(tmp_path):
    out = tmp_path / "bench"
    res = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )

    assert res.returncode == 0, res.stderr[-2000:]
    result = json.loads((out / "results.json").read_text())
    assert set(result["targets"]) == {"direct", "passthrough", "meterline"}
    assert {(r["target"], r["api"], r["stream"]) for r in result["runs"]} == {
        (t, api, s) for t in ("direct", "passthrough", "meterline") for api in ("chat", "responses") for s in (False, True)
    }
    assert all(r["requests"] > 0 and r["errors"] == 0 for r in result["runs"])
    assert result["ledger"][0]["events"] == 2000
    table = (out / "results.md").read_text()
    assert "| non-stream | 4 | Meterline |" in table
    assert "| Responses stream | 4 | Meterline |" in table
    assert "showback s" in table
