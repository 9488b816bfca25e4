"""`meterline dashboard` serves every page to a real browser (headless Chromium)."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.dashboard.conftest import ADMIN_PASSWORD
from tests.dashboard.screens import CHROMIUM, PAGES, dashboard, screenshots

pytestmark = pytest.mark.skipif(not shutil.which(CHROMIUM), reason="Debian's chromium is not installed")

PNG = b"\x89PNG\r\n\x1a\n"


def test_every_page_renders_in_chromium_after_signing_in(ledger, tmp_path):
    out = tmp_path / "screenshots"
    out.mkdir()
    env = {**os.environ, "METERLINE_DASHBOARD_PASSWORD": ADMIN_PASSWORD}
    with dashboard(ledger.config_path, env, out / "dashboard.log") as url:
        shots = screenshots(url, ADMIN_PASSWORD, out)
    assert list(shots) == PAGES
    for path in shots.values():
        data = path.read_bytes()
        assert data.startswith(PNG) and len(data) > 20_000, path
