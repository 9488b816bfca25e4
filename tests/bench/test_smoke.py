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


def _bench(module: str, *args: str) -> str:
    res = subprocess.run(
        [sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


def test_workers_bench_reports_each_target_and_every_process_of_both_meterlines():
    out = _bench("bench.workers", "--seconds", "0.5", "--rounds", "1", "--concurrency", "4")

    for mode in ("non-stream", "stream"):
        for label in ("bare aiohttp pass-through", "Meterline, 1 worker", "Meterline, --workers 2"):
            row = next(line for line in out.splitlines() if line.startswith(f"| {mode} | 4 | {label} |"))
            assert row.count("|") == 13 and row.endswith("| 0 |")  # every column, no failed call
    procs = [line.split(" | ")[1] for line in out.splitlines() if line.startswith("| Meterline, --workers 2 | ")]
    assert {"supervisor", "worker 1", "worker 2"} <= set(procs)
    assert any(line.startswith("| Meterline, 1 worker | worker | 1 |") for line in out.splitlines())
    assert "per worker:" in out and "load average at the end" in out


def test_dimensions_bench_reports_the_in_process_paths_and_every_kind_of_answer():
    out = _bench("bench.dimensions", "--seconds", "0.5", "--rounds", "1", "--concurrency", "4", "--repeat", "1", "--number", "50")

    lines = out.splitlines()
    for answer in ("plain text", "priority + audio"):  # in process: today, before issue 21, minimal, differences
        assert next(line for line in lines if line.startswith(f"| {answer}")).count("|") == 7
    for kind in ("plain text", "service_tier priority", "audio in and out", "priority + audio"):
        row = next(line for line in lines if line.startswith(f"| non-stream | {kind} |"))
        assert row.count("|") == 10 and row.endswith("| 0 |")
    assert "tier priority, audio:" in out and "with a cost breakdown" in out


def test_adoption_bench_times_a_killed_workers_calls_into_the_ledger_and_finds_none_lost():
    out = _bench("bench.adoption", "--kills", "1", "--clients", "4")

    (row,) = [line for line in out.splitlines() if line.startswith("| 1 | ")]
    acknowledged, seconds, missing = (cell.strip() for cell in row.strip("|").split("|")[1:])
    assert int(acknowledged.replace(",", "")) > 0 and float(seconds) >= 0 and missing == "0"
    assert " 0 of them missing from the ledger, 0 counted twice" in out


def test_in_process_bench_times_metered_calls_through_the_app_and_profiles_them():
    out = _bench("bench.in_process", "--calls", "300", "--rounds", "2", "--profile")

    row = next(line for line in out.splitlines() if line.startswith("| ") and line[2].isdigit())
    median, fastest, rounds = (cell.strip() for cell in row.strip("|").split("|"))
    assert float(fastest) <= float(median) and len(rounds.split(",")) == 2 and float(fastest) > 0
    assert "proxy/llm.py" in out and "(forward)" in out  # the profile of the metered path


def test_in_process_bench_runs_the_request_path_alone_for_the_instruction_count():
    # bench.instructions runs this under callgrind (too slow for CI): it must run, and answer.
    out = _bench("bench.in_process", "--calls", "300", "--rounds", "1", "--no-refresh")
    row = next(line for line in out.splitlines() if line.startswith("| ") and line[2].isdigit())
    assert float(row.strip("|").split("|")[0]) > 0
