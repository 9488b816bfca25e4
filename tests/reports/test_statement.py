"""The department statement: ties to the chargeback CSV to the cent for any ledger, reads as a
finance document (pdftotext), and lays out cleanly over several pages (pdftoppm, bbox)."""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import subprocess
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings

from meterline.costing import create_engine, create_schema, settings_from_dict
from meterline.reports import EXPORTS
from meterline.reports.statement import statement
from tests.conftest import base_config, run_cli
from tests.reports.months import hard_month
from tests.reports.test_chargeback_properties import DEPTS, events_st, rules_st, seed_drawn
from tests.seed import event, seed

ARTIFACTS = Path(
    os.environ.get(
        "METERLINE_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "build" / "test-artifacts"
    )
)
MONEY = re.compile(r"^-?\d{1,3}(,\d{3})*\.\d{2}$")


def _csv(text):
    return list(csv.DictReader(io.StringIO(text, newline="")))


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(rows=events_st, rules=rules_st)
def test_every_statement_total_is_its_departments_charge_in_the_csv_to_the_cent(
    tmp_path_factory, rows, rules
):
    path = tmp_path_factory.mktemp("ledger") / "ledger.db"
    engine = create_engine(f"sqlite:///{path}")
    create_schema(engine)
    seed_drawn(engine, rows)
    s = settings_from_dict({"departments": DEPTS, "chargeback": rules}, environ={})
    lines = _csv("".join(EXPORTS["chargeback"]["csv"](engine, s, "2026-06")))
    for dept in ("research", "product"):
        stmt = statement(engine, s, "2026-06", dept, now=datetime(2026, 7, 2, tzinfo=UTC))
        charge = sum(
            (Decimal(r["charge_usd"]) for r in lines if r["department"] == dept), Decimal(0)
        )
        assert stmt.charge_usd == charge
        assert abs(stmt.total - charge) < Decimal("0.01")  # to the cent
        parts = [
            *(i.amount for i in stmt.items),
            *(i.amount for i in stmt.adjustments),
            stmt.shared,
            stmt.markup,
            stmt.rounding,
        ]
        assert sum(parts, Decimal(0)) == stmt.total  # the document adds up
        assert all(p == p.quantize(Decimal("0.01")) for p in parts)
        assert sum(i.requests for i in [*stmt.items, *stmt.adjustments]) == sum(
            int(r["requests"]) for r in lines if r["department"] == dept
        )
    engine.dispose()


@pytest.fixture(scope="module")
def month(tmp_path_factory):
    return hard_month(tmp_path_factory.mktemp("hard"))


def _pdf(month, department, out, period=None):
    run_cli("export", "statement", "--month", period or month.period, "--department", department, "--format", "pdf",
            "--out", str(out), "--config", str(month.config))  # fmt: skip
    assert out.read_bytes().startswith(b"%PDF-")
    return out


def _text(pdf, *args):
    return subprocess.run(
        ["pdftotext", *args, str(pdf), "-"], capture_output=True, text=True, check=True
    ).stdout


def test_the_pdf_shows_the_total_of_the_chargeback_csv_and_says_draft_while_the_month_is_open(
    month, tmp_path
):
    lines = _csv(
        run_cli(
            "export", "chargeback", "--month", month.period, "--config", str(month.config)
        ).stdout
    )
    for dept in ("research", "product", "legal"):
        text = _text(_pdf(month, dept, tmp_path / f"{dept}.pdf"), "-layout")
        charge = sum(
            (Decimal(r["charge_usd"]) for r in lines if r["department"] == dept), Decimal(0)
        )
        billed = sum((Decimal(r["billed_usd"]) for r in lines if r["department"] == dept), Decimal(0))
        total = re.search(r"Total USD\s+(\S+)", text).group(1)
        # The total is what is billed beyond credits (the month's credits: tests/reports/months.py).
        assert abs(Decimal(total.replace(",", "")) - billed) < Decimal("0.01"), (
            dept,
            total,
            billed,
        )
        assert (
            f"{charge.quantize(Decimal('0.000001'))}" in text
        )  # the exact CSV amount, tied in the footer
        assert "DRAFT" in text and f"ML-{month.period}-{dept.upper()}" in text
    research = _text(tmp_path / "research.pdf", "-layout")
    assert re.search(r"Total USD\s+1,\d{3}\.\d{2}", research)  # thousands separators
    assert "Adjustments carried from closed months" in research and "late-run" in research
    assert "billed at 0" in research  # the unpriced model is flagged
    assert re.search(r"Discount \(-3%\)\s+-\d", research)
    assert re.search(r"Credits .*-100\.33", research)  # nlp's grant, drawn in full
    assert "Share of shared costs" in _text(tmp_path / "legal.pdf", "-layout")


def test_a_closed_months_statement_is_final_and_keeps_its_number(month, tmp_path):
    a = _text(_pdf(month, "research", tmp_path / "a.pdf", month.previous))
    b = _text(_pdf(month, "research", tmp_path / "b.pdf", month.previous))
    assert a == b and "FINAL" in a and "DRAFT" not in a and f"ML-{month.previous}-RESEARCH" in a


def test_an_unknown_department_is_a_one_line_error(month):
    res = run_cli(
        "export",
        "statement",
        "--month",
        month.period,
        "--department",
        "nope",
        "--config",
        str(month.config),
        check=False,
    )
    assert (
        res.returncode == 1
        and res.stderr.startswith("meterline: no department 'nope'")
        and "Traceback" not in res.stderr
    )


def test_names_are_escaped_in_the_html(month):
    html = run_cli("export", "statement", "--month", month.period, "--department", "product", "--format", "html",
                   "--config", str(month.config)).stdout  # fmt: skip
    assert "=HYPERLINK(&#34;http://x&#34;)" in html and '"http://x"' not in html.split("<body>")[1]


@pytest.fixture(scope="module")
def busy(tmp_path_factory):
    """A department with many teams, projects and models: a statement of several pages."""
    folder = tmp_path_factory.mktemp("busy")
    teams = [f"team-{i:02d}" for i in range(9)]
    cfg = base_config(folder, "http://127.0.0.1:9")
    cfg["departments"] = [{"id": "research", "name": "Research and Advanced Development", "cost_center": "CC-100",
                           "teams": [{"id": t} for t in teams]}]  # fmt: skip
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    engine = create_engine(cfg["database"])
    create_schema(engine)
    ts = datetime(2026, 9, 14, 12, tzinfo=UTC)
    long_project = "customer-support-summaries-for-the-emea-enterprise-accounts-programme"
    seed(engine, [
        event(f"{(i * 7919 % 100000) / 100 + 0.005:.3f}", ts, team=t, project=p, model=m, input_tokens=1000 + i * 37_123, output_tokens=i * 911)
        for i, (t, p, m) in enumerate(
            (t, p, m) for t in teams for p in ("search", long_project, "eval") for m in ("gpt-4o", "gpt-4o-mini", "claude-sonnet-4-5-20250929")
        )
    ])  # fmt: skip
    engine.dispose()
    return path, long_project


def _pages(pdf: Path) -> list[str]:
    n = int(
        re.search(
            r"Pages:\s+(\d+)",
            subprocess.run(
                ["pdfinfo", str(pdf)], capture_output=True, text=True, check=True
            ).stdout,
        ).group(1)
    )
    return [_text(pdf, "-layout", "-f", str(p), "-l", str(p)) for p in range(1, n + 1)]


def test_a_long_statement_breaks_pages_cleanly_with_aligned_amounts_and_full_names(busy, tmp_path):
    config, long_project = busy
    out = ARTIFACTS / "statement"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    pdf = out / "statement-busy.pdf"
    run_cli(
        "export",
        "statement",
        "--month",
        "2026-09",
        "--department",
        "research",
        "--out",
        str(pdf),
        "--config",
        str(config),
    )
    pages = _pages(pdf)
    assert len(pages) >= 3
    for n, page in enumerate(pages, 1):
        body = [ln.strip() for ln in page.splitlines() if ln.strip()]
        if any(MONEY.search(ln.split()[-1]) for ln in body if ln.startswith(("gpt-", "claude-"))):
            assert any(ln.startswith("TEAM / PROJECT / MODEL OR TOOL") for ln in body), (
                f"page {n} has lines without the header"
            )
        content = [ln for ln in body if not ln.startswith(("ML-2026-09", "Page "))]
        last = content[-1]
        assert "subtotal" in last or not last.startswith(("Team team-", "Project ")), (
            f"page {n} ends with a heading cut from its rows"
        )
    text = _text(pdf)
    assert (
        long_project in re.sub(r"\s*\n\s*", "", text) or long_project in text
    )  # wrapped, never cut
    # Every amount on a page ends at the same x: one right-aligned column.
    bbox = _text(pdf, "-bbox")
    for page in bbox.split("<page ")[1:]:
        right = {
            round(float(m.group(1)), 0)
            for m in re.finditer(r'xMax="([\d.]+)"[^>]*>(-?[\d,]+\.\d{2})</word>', page)
        }
        assert len(right) == 1, right
    subprocess.run(["pdftoppm", "-png", "-r", "80", str(pdf), str(out / "page")], check=True)
    assert len(list(out.glob("page-*.png"))) == len(pages)
