"""`meterline dashboard` serves every page to a real browser (headless Chromium) at 1400 and
1920 px: no exception, no error element, a picture of each in the test artifacts."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.dashboard.conftest import ADMIN_PASSWORD, NOW
from tests.dashboard.screens import CHROMIUM, PAGES, WIDTHS, dashboard, deep_link, screenshots

pytestmark = pytest.mark.skipif(not shutil.which(CHROMIUM), reason="Debian's chromium is not installed")

PNG = b"\x89PNG\r\n\x1a\n"
# Where the pictures are kept for people to look at (CI uploads it): build/ is not committed.
ARTIFACTS = Path(os.environ.get("METERLINE_TEST_ARTIFACTS", Path(__file__).parents[2] / "build" / "test-artifacts"))


def test_every_page_renders_in_chromium_at_both_widths_without_an_error(ledger):
    out = ARTIFACTS / "screenshots"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    env = {**os.environ, "METERLINE_DASHBOARD_PASSWORD": ADMIN_PASSWORD}
    with dashboard(ledger.config_path, env, out / "dashboard.log", NOW.isoformat()) as url:
        shots, problems = screenshots(url, ADMIN_PASSWORD, out)
        heading, landed = deep_link(url, ADMIN_PASSWORD, f"/budgets?month={ledger.previous}")
    assert not problems, problems
    assert sorted(shots) == sorted((p, w) for p in PAGES for w in WIDTHS)
    for path in shots.values():
        data = path.read_bytes()
        assert data.startswith(PNG) and len(data) > 20_000, path
    # A link to a page and a month survives signing in.
    assert heading == f"Budgets · {ledger.previous}" and f"month={ledger.previous}" in landed
