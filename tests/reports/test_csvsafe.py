"""No cell of any export opens as a formula, whatever a client put in a name (issue 20, item 4)."""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from datetime import UTC, datetime, timedelta

import pytest
import yaml

from meterline.costing import create_engine, create_schema
from meterline.reports.csvsafe import csv_line, safe_text
from tests.conftest import base_config, run_cli
from tests.seed import event, seed

HOSTILE = [
    "=1+1",
    "glob-\r=cmd|' /C calc'!A0",
    "\r=1+1",
    "ok\n+SUM(A1:A9)",
    "ok\r\n-2+3",
    "ok\u2028@SUM(A1)",
    "ok\x0b=1",
    " =1+1",
    "\u200b=1+1",
    "\ufeff=1+1",
    "\u202e=1+1",
    "\uff1d1+1",  # full-width equals sign
    "\u00a0\t=1",
    "\t=1",
    "-",
    "@import",
]
BENIGN = ["gpt-4o-mini", "search_code", "a=b", "x-1", "", "Q4 review", "caf\u00e9"]
BREAKS = re.compile("\r\n|[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]")


def formula_like(cell: str) -> bool:
    """How a lenient spreadsheet reads a cell: invisible characters dropped, compatibility
    forms folded, then a leading = + - @ is a formula."""
    for ch in cell:
        if unicodedata.category(ch) in {"Zs", "Zl", "Zp", "Cc", "Cf"}:
            continue
        return unicodedata.normalize("NFKC", ch)[:1] in "=+-@"
    return False


@pytest.mark.parametrize("value", HOSTILE)
def test_every_line_of_a_hostile_value_reads_as_text(value):
    safe = safe_text(value)
    assert not any(formula_like(line) for line in BREAKS.split(safe))
    assert safe.replace("'", "") == value.replace("'", "")  # only quotes added, nothing lost


@pytest.mark.parametrize("value", BENIGN)
def test_ordinary_names_are_kept_as_they_are(value):
    assert safe_text(value) == value


def test_a_lone_cr_and_every_other_line_break_are_quoted():
    for brk in ("\r", "\n", "\r\n", "\u2028", "\x0b", "\x85"):
        line = csv_line(["a", f"x{brk}y", "b"])
        assert line == f'a,"x{brk}y",b\n'
        assert next(csv.reader(io.StringIO(line, newline=""))) == ["a", f"x{brk}y", "b"]
    assert csv_line(['say "hi"', "1,2"]) == '"say ""hi""","1,2"\n'


@pytest.fixture
def hostile_ledger(tmp_path):
    cfg = base_config(
        tmp_path,
        "http://127.0.0.1:9",
        chargeback={"shared_costs": [{"name": "=platform", "monthly_usd": "10"}]},
    )
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    engine = create_engine(cfg["database"])
    create_schema(engine)
    ts = (datetime.now(UTC).replace(day=1) - timedelta(days=1)).replace(day=10, hour=12)
    rows = [event("0.01", ts, model=v, project=v, user=v, tags=f"k={v}") for v in HOSTILE]
    rows += [
        event("0.002", ts, kind="mcp", provider="github", model="", tool=v, method="tools/call")
        for v in HOSTILE
    ]
    seed(engine, rows)
    engine.dispose()
    return str(path), ts.strftime("%Y-%m")


def _cells_as_spreadsheets_read_them(text: str):
    # A spreadsheet that honours quotes ...
    for row in csv.reader(io.StringIO(text, newline="")):
        yield from row
    # ... and an importer that splits lines first, quotes or not.
    for physical in BREAKS.split(text):
        for row in csv.reader([physical]):
            yield from row


@pytest.mark.parametrize(
    "args",
    [
        ("chargeback", "--format", "csv"),
        ("chargeback", "--format", "focus"),
        ("events", "--format", "csv"),
    ],
    ids=["chargeback", "focus", "events"],
)
def test_no_export_cell_opens_as_a_formula(hostile_ledger, args):
    cfg, month = hostile_ledger
    text = run_cli("export", args[0], "--month", month, "--config", cfg, *args[1:]).stdout
    assert "calc" in text  # the hostile names are there, as text
    bad = [
        c for c in _cells_as_spreadsheets_read_them(text) if formula_like(c) and not _is_number(c)
    ]
    assert bad == []


def _is_number(cell: str) -> bool:
    return re.fullmatch(r"-?\d+(\.\d+)?", cell) is not None  # negative amounts stay numbers
