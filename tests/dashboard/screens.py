"""Screenshots of every dashboard page in headless Chromium (Debian's), via Playwright, at the
widths people read it at.

Used by the screenshot test (which fails on any exception or error element) and to refresh
the pictures in docs/ from the demo's ledger:
    python -m tests.dashboard.screens CONFIG OUT_DIR [--now ISO] [--docs docs]
(with $METERLINE_DASHBOARD_PASSWORD set).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

CHROMIUM = "/usr/bin/chromium"
PAGES = ["Overview", "Departments", "Agents and tools", "Budgets", "Credits", "Chargeback", "Guards", "Keys"]
WIDTHS = (1400, 1920)
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]  # fmt: skip
# What must never be on a page: a Python exception, an error alert.
BROKEN = '[data-testid="stException"], [data-testid="stAlertContentError"]'


def slug(title: str) -> str:
    return title.lower().replace(" ", "-")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def dashboard(config: Path, env: dict[str, str], log: Path, now: str | None = None) -> Iterator[str]:
    """`meterline dashboard` as a subprocess; yields its URL once it answers."""
    port = _free_port()
    seam = ["--now", now] if now else []
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "meterline", "dashboard", "--port", str(port), "--config", str(config), *seam],
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


def _sign_in(page: Any, password: str, user: str) -> None:
    page.get_by_role("textbox", name="User").fill(user)
    page.get_by_role("textbox", name="Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def _heading(title: str) -> str:
    return "AI spend" if title == "Overview" else title


def screenshots(
    url: str, password: str, out: Path, user: str = "admin", widths: tuple[int, ...] = WIDTHS, pages: list[str] = PAGES
) -> tuple[dict[tuple[str, int], Path], list[str]]:
    """Sign in and save a full-page PNG of each of `pages` (titles) at each width.

    Returns the pictures by (page title, width) and what was wrong: any exception or error
    element on a page, any browser console error."""
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    shots: dict[tuple[str, int], Path] = {}
    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for width in widths:
                page = browser.new_page(viewport={"width": width, "height": 1000})
                page.set_default_timeout(60_000)
                page.on("pageerror", lambda e, w=width: problems.append(f"{w}px: page error {e}"))
                page.goto(url)
                _sign_in(page, password, user)
                for title in pages:
                    if title != "Overview":
                        page.get_by_role("link", name=title).click()
                    page.get_by_role("heading", name=_heading(title)).first.wait_for()
                    _settle(page)
                    for el in page.locator(BROKEN).all():
                        problems.append(f"{title} at {width}px shows: {el.inner_text()[:300]}")
                    path = out / f"{slug(title)}-{width}.png"
                    # Streamlit scrolls inside its main section, which a full-page shot does not
                    # see: make the window as tall as the page instead, then take it.
                    tall = page.evaluate(
                        "() => { const m = document.querySelector('[data-testid=\"stMainBlockContainer\"]');"
                        " return m ? m.scrollHeight + 160 : 1000; }"
                    )
                    page.set_viewport_size({"width": width, "height": max(1000, int(tall))})
                    _settle(page)
                    page.screenshot(path=str(path))
                    page.set_viewport_size({"width": width, "height": 1000})
                    shots[(title, width)] = path
                page.close()
        finally:
            browser.close()
    return shots, problems


def deep_link(url: str, password: str, path: str, user: str = "admin") -> tuple[str, str]:
    """Open `url + path` signed out, sign in; (the page's heading, the URL it ends on)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            page.goto(url + path)
            _sign_in(page, password, user)
            page.locator("h1").filter(has_not_text="Meterline").first.wait_for()
            _settle(page)
            return page.locator("h1").first.inner_text(), page.url
        finally:
            browser.close()


def _settle(page: Any) -> None:
    """Wait until Streamlit has finished the run and the charts have drawn."""
    page.wait_for_function(
        """() => {
          const shown = sel => [...document.querySelectorAll(sel)].filter(e => e.offsetParent !== null);
          return !document.querySelector('[data-testid="stStatusWidget"]')
            && shown('[data-testid="stSkeleton"]').length === 0
            && shown('[data-testid="stVegaLiteChart"]').every(e => e.querySelector('canvas, svg'))
            && shown('[data-testid="stDataFrame"]').every(e => e.querySelector('canvas'));
        }""",
        polling=250,
    )
    page.wait_for_timeout(1500)  # let transitions finish before the picture


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("config", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--now")
    ap.add_argument("--docs", type=Path, help="also copy the 1400 px pictures here as dashboard-PAGE.png")
    ap.add_argument("--prefix", default="dashboard-")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    with dashboard(args.config, env, args.out / "dashboard.log", args.now) as url:
        shots, problems = screenshots(url, env["METERLINE_DASHBOARD_PASSWORD"], args.out)
    for (title, width), path in shots.items():
        print(title, width, path)
        if args.docs and width == WIDTHS[0]:
            shutil.copyfile(path, args.docs / f"{args.prefix}{slug(title)}.png")
    for p in problems:
        print("PROBLEM", p)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
