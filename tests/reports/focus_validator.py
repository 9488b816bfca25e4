"""The FinOps Foundation's FOCUS validator, in an environment of its own, for the tests.

focus-validator 2.2.1 needs Python >= 3.12 and pyarrow < 21, which the project's own
environment does not have, so it lives in a virtualenv built once per machine at
$METERLINE_FOCUS_VALIDATOR_VENV (default ~/.cache/meterline/focus-validator-2.2.1); .ci/run
builds it before the tests (`python -m tests.reports.focus_validator`). It runs offline
(`--block-download`) on the FOCUS 1.2 rules bundled in the package.

Two habits of the tool shape how it is run:
- it opens `focus_validator/rules/currency_codes.csv` relative to the working directory, so it
  runs from its own site-packages folder;
- its exit code is 0 even when rules fail, so its JUnit report is read instead.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

VERSION = "2.2.1"
REQUIREMENTS = [f"focus-validator=={VERSION}", "pyarrow<21"]
PYTHON_CANDIDATES = ("python3.12", "python3.13", "/root/.pyenv/versions/3.12.1/bin/python")
# focus-validator 2.2.1 checks these two unconditionally, and each is the other's negation
# (InvoiceId MUST be null / MUST NOT be null, without the condition on an invoice that the
# spec gives them), so every dataset fails one of them. They are the only rules excluded.
CONTRADICTIONS = {"InvoiceId-C-004-C", "InvoiceId-C-005-C"}


def venv_path() -> Path:
    default = Path.home() / ".cache" / "meterline" / f"focus-validator-{VERSION}"
    return Path(os.environ.get("METERLINE_FOCUS_VALIDATOR_VENV", default))


def _python312() -> str:
    for cand in (os.environ.get("METERLINE_PYTHON312", ""), *PYTHON_CANDIDATES):
        found = cand and (shutil.which(cand) or (Path(cand).is_file() and cand))
        if found:
            out = subprocess.run(
                [found, "-c", "import sys; print(sys.version_info >= (3, 12))"],
                capture_output=True,
                text=True,
            )
            if out.stdout.strip() == "True":
                return str(found)
    raise RuntimeError("focus-validator needs Python >= 3.12: set METERLINE_PYTHON312 to one")


def ensure_venv() -> Path:
    """The validator's virtualenv, built on first use (from PyPI) and kept."""
    venv = venv_path()
    done = venv / ".meterline-complete"  # written last: a half-built venv is built again
    if done.exists():
        return venv
    shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([_python312(), "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *REQUIREMENTS], check=True)
    done.write_text(" ".join(REQUIREMENTS) + "\n")
    return venv


def package_dir(venv: Path) -> Path:
    (site,) = (venv / "lib").glob("python3.*/site-packages")
    return site


@dataclass
class Report:
    total: int
    failed: list[str]  # rule ids
    skipped: int
    keywords: dict[str, str]  # rule id -> MUST, MUST NOT, SHOULD, ...
    checked: set[str]  # rule ids the validator ran (not skipped), passed or not

    @property
    def must_failures(self) -> list[str]:
        return sorted(
            r
            for r in self.failed
            if self.keywords.get(r, "").startswith("MUST") and r not in CONTRADICTIONS
        )

    @property
    def passed(self) -> int:
        return self.total - len(self.failed) - self.skipped


def validate(data_file: Path, out_dir: Path, criteria: tuple[str, ...] = ()) -> Report:
    """Run the validator on a FOCUS 1.2 CSV or Parquet file and read its JUnit report.

    criteria: the applicability criteria to declare (rules that depend on a provider supporting
    something, such as negotiated prices, are skipped unless it is declared)."""
    venv = ensure_venv()
    site = package_dir(venv)
    junit = out_dir / f"{data_file.stem}-{data_file.suffix[1:]}-focus-validator.xml"
    res = subprocess.run(
        [str(venv / "bin" / "focus-validator"), "--data-file", str(data_file), "--validate-version", "1.2",
         "--block-download", "--output-type", "unittest", "--output-destination", str(junit),
         *(["--applicability-criteria", ",".join(criteria)] if criteria else [])],
        cwd=site, capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )  # fmt: skip
    if not junit.exists():
        raise AssertionError(
            f"focus-validator wrote no report (exit {res.returncode}): {res.stderr[-2000:]}"
        )
    root = ET.parse(junit).getroot()
    failed = sorted(
        {f.get("name", "") for f in root.iter("failure")}
        | {e.get("name", "") for e in root.iter("error")}
    )
    model = next((site / "focus_validator" / "rules").glob("model-1.2*.json"))
    rules = json.loads(model.read_text())["ModelRules"]
    keywords = {rid: r.get("ValidationCriteria", {}).get("Keyword", "") for rid, r in rules.items()}
    return Report(
        total=int(root.get("tests", 0)),
        failed=failed,
        skipped=int(root.get("skipped", 0)),
        keywords=keywords,
        checked={
            t.get("name", "").split(" ")[0] for t in root.iter("testcase") if t.find("skipped") is None
        },
    )


if __name__ == "__main__":  # .ci/run: build the environment before the tests
    print(ensure_venv())
