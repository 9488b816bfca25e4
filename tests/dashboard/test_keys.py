"""The Keys page: every key with its team, project, created, expiry and rotation grace, and
this month's spend; a department's viewer sees its teams' keys only; no secret ever."""

from __future__ import annotations

import os
import shutil
from datetime import timedelta
from decimal import Decimal

import pytest

from meterline.costing import create_key, revoke_key, rotate_key
from meterline.costing.org import Org
from meterline.reports.keys_view import expiry_label, key_rows
from tests.dashboard.conftest import (
    ADMIN_PASSWORD,
    NOW,
    VIEWER_PASSWORD,
    cells,
    page,
    rendered,
    signed_in,
)
from tests.dashboard.screens import CHROMIUM, WIDTHS, dashboard, screenshots
from tests.dashboard.test_screenshots import ARTIFACTS
from tests.seed import event, seed


def _keys(ledger):
    org = Org(ledger.settings)
    made = {}
    made["soon"], s1 = create_key(ledger.engine, team="nlp", name="search bot", project="search",
                                  expires_at=NOW + timedelta(days=5, hours=1), org=org, now=NOW - timedelta(days=30))  # fmt: skip
    made["web"], s2 = create_key(ledger.engine, team="web", name="storefront", org=org, now=NOW - timedelta(days=3))
    made["old"], s3 = create_key(ledger.engine, team="vision", name="retired", org=org, now=NOW - timedelta(days=60))
    revoke_key(ledger.engine, made["old"].id, now=NOW - timedelta(days=1))
    made["rotated"], s4 = create_key(ledger.engine, team="nlp", name="ci", org=org, now=NOW - timedelta(days=10))
    _, s5 = rotate_key(ledger.engine, made["rotated"].id, grace=timedelta(hours=36), now=NOW - timedelta(hours=12))
    seed(ledger.engine, [event("0.125", NOW - timedelta(hours=2), team="nlp", key_id=made["soon"].id),
                         event("0.25", NOW - timedelta(hours=1), department="product", team="web", key_id=made["web"].id)])  # fmt: skip
    return made, [s1, s2, s3, s4, s5]


def test_the_keys_page_lists_keys_with_expiry_rotation_and_spend_and_never_a_secret(ledger):
    made, secrets = _keys(ledger)
    at = page(signed_in(), "keys")
    rows = {r["Name"]: r for r in cells(at)}
    assert set(rows) == {"search bot", "storefront", "retired", "ci"}
    soon = rows["search bot"]
    assert (soon["Team"], soon["Department"], soon["Project"], soon["Status"]) == ("nlp", "Research", "search", "active")
    assert soon["Expiry"] == f"expires in 6 days ({NOW + timedelta(days=5, hours=1):%Y-%m-%d})"
    assert soon["Spent this month"] == "$0.13"
    assert soon["Created"] == f"{made['soon'].created_at:%Y-%m-%d}"
    assert rows["storefront"]["Expiry"] == "never" and rows["storefront"]["Spent this month"] == "$0.25"
    assert rows["retired"]["Status"] == "revoked"
    assert rows["ci"]["Rotation grace"] == f"old secret valid until {NOW + timedelta(hours=24):%Y-%m-%d %H:%M} UTC"
    assert [m.value for m in at.metric][:3] == ["3", "1", "1"]
    assert any("search bot" in w.value and "expires in 6 days" in w.value for w in at.warning)
    page_bytes = rendered(at)
    for s in secrets:
        assert s.encode() not in page_bytes and s[-20:].encode() not in page_bytes


def test_a_departments_viewer_sees_its_teams_keys_only(ledger):
    _keys(ledger)
    at = page(signed_in("product-lead", VIEWER_PASSWORD), "keys")
    assert [r["Name"] for r in cells(at)] == ["storefront"]


def test_expiry_reads_as_people_say_it():
    assert expiry_label(None, NOW) == "never"
    assert expiry_label(NOW + timedelta(days=1, seconds=1), NOW) == "expires in 2 days"
    assert expiry_label(NOW + timedelta(days=1), NOW) == "expires in 1 day"
    assert expiry_label(NOW + timedelta(hours=2), NOW) == "expires today"
    assert expiry_label(NOW - timedelta(hours=2), NOW) == "expired today"
    assert expiry_label(NOW - timedelta(days=3, hours=1), NOW) == "expired 3 days ago"


def test_key_rows_put_active_keys_first_with_this_months_spend(ledger):
    made, _ = _keys(ledger)
    rows = key_rows(ledger.engine, Org(ledger.settings), ledger.period, now=NOW)
    assert [r.status for r in rows] == ["active", "active", "active", "revoked"]
    spent = {r.id: r.spend_usd for r in rows}
    assert spent[made["soon"].id] == Decimal("0.125") and spent[made["rotated"].id] == 0


@pytest.mark.skipif(not shutil.which(CHROMIUM), reason="Debian's chromium is not installed")
def test_the_keys_page_renders_in_chromium_without_an_error(ledger):
    _, secrets = _keys(ledger)
    out = ARTIFACTS / "screenshots-keys"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    env = {**os.environ, "METERLINE_DASHBOARD_PASSWORD": ADMIN_PASSWORD}
    with dashboard(ledger.config_path, env, out / "dashboard.log", NOW.isoformat()) as url:
        # Overview first, as a viewer lands: the navigation is the app's own from then on.
        shots, problems = screenshots(url, ADMIN_PASSWORD, out, pages=["Overview", "Keys"])
    assert not problems, problems
    assert sorted(shots) == sorted((p, w) for p in ("Overview", "Keys") for w in WIDTHS)
    for path in shots.values():
        assert path.read_bytes().startswith(b"\x89PNG") and path.stat().st_size > 20_000
    assert not any(s in (out / "dashboard.log").read_text() for s in secrets)
