"""Screenshots of every dashboard page in headless Chromium (Debian's), via Playwright.

Used by the screenshot test and to refresh docs/dashboard.png:
    python -m tests.dashboard.screens CONFIG OUT_DIR   (with $METERLINE_DASHBOARD_PASSWORD set)
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

CHROMIUM = "/usr/bin/chromium"
PAGES = ["Overview", "Departments", "Agents and tools", "Budgets", "Chargeback"]
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]  # fmt: skip


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def dashboard(config: Path, env: dict[str, str], log: Path) -> Iterator[str]:
    """`meterline dashboard` as a subprocess; yields its URL once it answers."""
    port = _free_port()
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "meterline", "dashboard", "--port", str(port), "--config", str(config)],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(url + "/_stcore/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the dashboard did not start: {log.read_text()[-2000:]}")
                time.sleep(0.2)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def screenshots(url: str, password: str, out: Path, user: str = "admin") -> dict[str, Path]:
    """Sign in and save a full-page PNG of each page; returns them by page title."""
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    shots: dict[str, Path] = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            page.goto(url)
            page.get_by_role("textbox", name="User").fill(user)
            page.get_by_role("textbox", name="Password").fill(password)
            page.get_by_role("button", name="Sign in").click()
            for title in PAGES:
                if title != "Overview":
                    page.get_by_role("link", name=title).click()
                heading = "AI spend" if title == "Overview" else title
                page.get_by_role("heading", name=heading).first.wait_for()
                _settle(page)
                path = out / f"{title.lower().replace(' ', '-')}.png"
                page.screenshot(path=str(path), full_page=True)
                shots[title] = path
        finally:
            browser.close()
    return shots


def _settle(page: object) -> None:
    """Wait until Streamlit has finished the run and the charts have drawn."""
    p = page  # playwright Page
    p.wait_for_function(  # type: ignore[attr-defined]
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
        " && [...document.querySelectorAll('.vega-embed')].every(e => e.querySelector('canvas, svg'))"
    )
    p.wait_for_timeout(800)  # type: ignore[attr-defined]  # let transitions finish before the picture


if __name__ == "__main__":
    config, target = Path(sys.argv[1]), Path(sys.argv[2])
    target.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    with dashboard(config, env, target / "dashboard.log") as url:
        for name, path in screenshots(url, env["METERLINE_DASHBOARD_PASSWORD"], target).items():
            print(name, path)
