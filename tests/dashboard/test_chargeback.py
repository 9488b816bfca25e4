"""Chargeback page: the invoice equals the report, downloads are the CLI's bytes, closing."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

from meterline.costing import is_closed
from meterline.dashboard.format import money
from meterline.reports import chargeback_report
from meterline.reports.invoice import chargeback_file
from tests.conftest import run_cli
from tests.dashboard.conftest import NOW, VIEWER_PASSWORD, cells, labels, page, signed_in


@pytest.fixture
def downloads(monkeypatch: pytest.MonkeyPatch) -> dict[str, bytes]:
    """What the page hands its download buttons, by file name."""
    files: dict[str, bytes] = {}
    original = MemoryMediaFileStorage.load_and_get_id

    def keep(self: Any, data: Any, mimetype: str, kind: Any, filename: str | None = None) -> str:
        if filename:
            files[filename] = data
        return original(self, data, mimetype, kind, filename)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", keep)
    return files


def cli_export(ledger: Any, fmt: str) -> bytes:
    res = run_cli("export", "chargeback", "--month", ledger.period, "--format", fmt, "--config", str(ledger.config_path))
    return res.stdout.encode("utf-8")


def test_invoice_table_equals_the_chargeback_report(ledger):
    at = page(signed_in(), "chargeback")
    rep = chargeback_report(ledger.engine, ledger.settings, ledger.period, now=NOW)
    rows = cells(at)
    depts = sorted(rep.chargeback.departments, key=lambda d: d.name)  # by name
    assert [r["Department"] for r in rows] == [f"{d.name} · {d.department}" for d in depts]
    assert [r["Billed so far"] for r in rows] == [money(d.billed) for d in depts]
    assert [r["Markup"] for r in rows] == [money(d.markup_usd) for d in depts]
    assert labels(at)[:3] == ["Department", "Cost center", "Usage"]
    assert f"Billed {ledger.previous}" in labels(at)
    legal = next(r for r in rows if r["Department"].startswith("Legal"))
    assert legal[f"Billed {ledger.previous}"] == "–"  # nothing billed before
    assert "Change" not in labels(at)  # an open month so far is not set against a whole one
    assert not next(m for m in at.metric if m.label == "Last month").delta
    assert "None" not in str(rows)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Billed so far"] == money(rep.chargeback.total)
    assert metrics["Forecast to month-end"] == money(rep.forecast)


def test_an_ended_month_is_billed_not_billed_so_far_and_the_open_one_says_when_it_closes(ledger):
    at = page(signed_in(), "chargeback")
    hint = " ".join(c.value for c in at.caption)
    nxt = f"{int(ledger.period[:4]) + (ledger.period[5:] == '12')}-{int(ledger.period[5:]) % 12 + 1:02d}"
    assert f"{ledger.period} has not ended yet; it can be closed from {nxt}-01." in hint
    at.selectbox(key="f_month").set_value(ledger.previous).run()
    metrics = {m.label: m.value for m in at.metric}
    assert "Billed" in metrics and "Billed so far" not in metrics
    assert metrics["Month"] == "ended, not closed" and metrics["Forecast to month-end"] == "–"
    assert [r["Change"] for r in cells(at)] == ["–", "–"]  # nothing billed the month before it


def test_invoice_lines_equal_the_csv_export(ledger):
    at = page(signed_in(), "chargeback")
    at.selectbox(key="cb_department").set_value("product").run()
    shown = cells(at, 1)
    csv_lines = [ln.split(",") for ln in cli_export(ledger, "csv").decode().splitlines()]
    header, rows = csv_lines[0], [dict(zip(csv_lines[0], r, strict=False)) for r in csv_lines[1:]]
    product = [r for r in rows if r["department"] == "product"]
    assert "charge_usd" in header
    cents = lambda x: money(Decimal(x))  # noqa: E731
    assert [r["Charge"] for r in shown] == [cents(r["charge_usd"]) for r in product]
    assert [r["Shared"] for r in shown] == [cents(r["allocated_usd"]) for r in product]
    assert [r["Markup"] for r in shown] == [cents(r["markup_usd"]) for r in product]
    assert [r["Model or tool"] for r in shown] == [r["model"] or r["tool"] or "–" for r in product]


def test_downloads_are_byte_identical_to_the_cli_export(ledger, downloads):
    page(signed_in(), "chargeback")
    assert downloads[f"chargeback-{ledger.period}.csv"] == cli_export(ledger, "csv")
    assert downloads[f"chargeback-{ledger.period}-focus.csv"] == cli_export(ledger, "focus")


def test_a_department_viewer_downloads_only_its_own_lines_of_the_cli_export(ledger, downloads):
    page(signed_in("product-lead", VIEWER_PASSWORD), "chargeback")
    got = downloads[f"chargeback-{ledger.period}.csv"].decode().splitlines()
    full = cli_export(ledger, "csv").decode().splitlines()
    assert got[0] == full[0]
    assert got[1:] == [ln for ln in full[1:] if ln.split(",")[1] == "product"] and len(got) > 1
    cb = chargeback_report(ledger.engine, ledger.settings, ledger.period).chargeback
    assert downloads[f"chargeback-{ledger.period}.csv"] == chargeback_file(cb, "csv", "product")


def test_an_admin_closes_an_ended_month_and_it_becomes_final(ledger):
    at = page(signed_in(), "chargeback")
    assert not [b for b in at.button if b.key == "close_month"]  # the current month has not ended
    at.selectbox(key="f_month").set_value(ledger.previous).run()
    assert at.button(key="close_month").disabled  # until confirmed
    at.checkbox(key="close_sure").check().run()
    at.button(key="close_month").click().run()
    assert not at.exception
    assert is_closed(ledger.engine, ledger.previous)
    assert any(f"Closed {ledger.previous}" in s.value for s in at.success)


def test_a_viewer_cannot_close_a_month(ledger):
    at = page(signed_in("product-lead", VIEWER_PASSWORD), "chargeback")
    at.selectbox(key="f_month").set_value(ledger.previous).run()
    assert at.title[0].value == f"Chargeback · {ledger.previous}"
    assert not [b for b in at.button if b.key == "close_month"]
    assert not is_closed(ledger.engine, ledger.previous)


def test_the_chargeback_page_offers_the_selected_departments_statement(ledger):
    at = page(signed_in("product-lead", VIEWER_PASSWORD), "chargeback")
    buttons = [b for b in at.get("download_button") if "statement" in b.proto.label]
    assert [b.proto.label for b in buttons] == ["Download Product's statement (PDF)"]


def test_a_name_a_spreadsheet_would_run_is_shown_as_the_exports_write_it(ledger):
    from datetime import UTC, datetime

    from tests.seed import event, seed

    ts = datetime.strptime(ledger.period + "-02 10:00", "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
    seed(ledger.engine, [event("0.01", ts, department="product", team="web", project="\u200b=HYPERLINK(1)")])
    at = page(signed_in(), "chargeback")
    at.selectbox(key="cb_department").set_value("product").run()
    # The table's own CSV download writes what it shows: the project follows its team's name in
    # one cell ("web / ..."), so no cell starts with what a spreadsheet would run.
    shown = [r["Team / project"] for r in cells(at, 1)]
    assert "web / \u200b=HYPERLINK(1)" in shown and not any(c.lstrip("\u200b")[:1] in "=+-@" for c in shown)
