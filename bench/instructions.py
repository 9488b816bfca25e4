"""Meterline's own work per call counted in instructions (valgrind's callgrind), not timed.

    python -m bench.instructions [--calls 2000] [--write-results]

On the shared VMs this project is measured on, CPU time moves by 10-30% from one run to the
next, while a change to the hot path is worth a few per cent: no timed bench here tells it from
the noise. The number of instructions a call executes does not move with the host: two runs
agree to about 0.3%. This counts the path of bench/in_process.py (the app of `meterline serve`,
a stand-in upstream, the bench's config) with the budget and key refreshes off
(`--no-refresh`), so that only the request path counts. It runs that bench twice under
callgrind, for one round of WARM_UP and of WARM_UP + `calls` calls (both warm up alike),
and divides the difference by `calls`. Only the serving process is counted (the writer child is
given nothing during the rounds). An instruction is not a nanosecond (a cache miss costs more):
this ranks changes to Meterline's own code, and bench/writer_process.py measures what users get.

Needs `valgrind` (a Debian package); each count takes a minute or two.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from bench.in_process import WARM_UP
from bench.report import replace_section

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).with_name("RESULTS.md")
SECTION = "instructions"
_COLLECTED = re.compile(r"Collected : (\d+)")


def count(calls: int) -> int:
    """Instructions callgrind counts in the serving process for one round of `calls` calls."""
    cmd = [
        "valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
        sys.executable, "-m", "bench.in_process", "--calls", str(calls), "--rounds", "1", "--no-refresh",
    ]  # fmt: skip
    # A fixed hash seed: dicts and sets then grow alike in both runs.
    env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    found = _COLLECTED.search(done.stderr)
    if done.returncode != 0 or found is None:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise SystemExit(f"bench.instructions: the counted run failed: {' / '.join(tail)}")
    return int(found.group(1))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=2000, help="calls counted (beyond the warm-up)")
    ap.add_argument("--write-results", action="store_true", help=f"replace the {SECTION} section of RESULTS.md")
    a = ap.parse_args(argv)
    if shutil.which("valgrind") is None:
        raise SystemExit("bench.instructions: needs valgrind (apt-get install valgrind)")
    # Both runs warm up on WARM_UP calls: the difference is the `calls` counted.
    per_call = (count(WARM_UP + a.calls) - count(WARM_UP)) / a.calls
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    lines = [
        "## Meterline's own work per call, in instructions (issue 18): `python -m bench.instructions`",
        "",
        f"Run of {stamp} (UTC) at {commit or 'an unknown commit'}: `python -m bench.instructions --calls {a.calls}`. "
        "The path of `bench.in_process` (budget and key refreshes off) under callgrind; the serving process only.",
        "",
        "| instructions per call |",
        "|---:|",
        f"| {per_call:,.0f} |",
    ]
    print("\n".join(lines))
    if a.write_results:
        replace_section(RESULTS, SECTION, "\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
