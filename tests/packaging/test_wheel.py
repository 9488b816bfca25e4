"""A wheel built from the repository installs one package, `meterline`, and nothing else at the
top of site-packages: no `proxy`, `costing` or `reports` to collide with other distributions."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Left-overs of local runs: a stale build/lib would put deleted modules into the wheel.
_NOT_SOURCE = shutil.ignore_patterns(
    ".git", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "bench", "tests", "docs",
    "meterline-demo", "meterline-spool", "*.db", "*.db-*",
)  # fmt: skip


def _run(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """A fresh venv with the wheel installed: (its python, its site-packages)."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    shutil.copytree(ROOT, source, ignore=_NOT_SOURCE)
    # Offline: the build uses the setuptools already installed rather than fetching one.
    built = _run(sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation", "-q", "-w", tmp / "dist", cwd=source)
    assert built.returncode == 0, f"{built.stderr}\n(needs setuptools>=70.1: pip install -e '.[dev]')"
    (wheel,) = (tmp / "dist").glob("meterline-*.whl")

    venv = tmp / "venv"
    made = _run(sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", venv, cwd=tmp)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    site = Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=tmp).stdout.strip())
    before = {p.name for p in site.iterdir()}
    # The venv has no pip of its own; the outer pip installs into it.
    added = _run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "-q", wheel, cwd=tmp)
    assert added.returncode == 0, added.stderr
    assert before.isdisjoint({"meterline"}), before
    yield python, site


def test_only_meterline_is_added_to_site_packages(installed: tuple[Path, Path]) -> None:
    _, site = installed
    top = sorted(p.name for p in site.iterdir() if p.name != "__pycache__")
    assert [n for n in top if not n.startswith("meterline-")] == ["meterline"], top
    assert [n for n in top if n.endswith(".dist-info")] == ["meterline-0.1.0.dist-info"]


def test_the_command_runs_from_the_wheel(installed: tuple[Path, Path], tmp_path: Path) -> None:
    python, site = installed
    where = _run(python, "-c", "import meterline.proxy as p; print(p.__file__)", cwd=tmp_path)
    assert where.stdout.strip().startswith(str(site)), where.stdout + where.stderr  # not the repository's
    helped = _run(python.parent / "meterline", "--help", cwd=tmp_path)
    assert helped.returncode == 0, helped.stderr
    assert all(c in helped.stdout for c in ("serve", "keys", "export", "report")), helped.stdout


def test_the_old_top_level_packages_are_gone(installed: tuple[Path, Path], tmp_path: Path) -> None:
    python, _ = installed
    for name in ("proxy", "costing", "reports", "dashboard"):
        found = _run(python, "-c", f"import {name}", cwd=tmp_path)  # a neutral cwd: not the repository
        assert found.returncode != 0 and "ModuleNotFoundError" in found.stderr, name


def test_the_wheel_carries_the_migrations_and_dashboard_pages(installed: tuple[Path, Path]) -> None:
    _, site = installed
    assert (site / "meterline" / "costing" / "migrations" / "script.py.mako").is_file()
    assert list((site / "meterline" / "costing" / "migrations" / "versions").glob("0001_*.py"))
    assert (site / "meterline" / "dashboard" / "app.py").is_file()
    assert list((site / "meterline" / "dashboard" / "pages").glob("*.py"))
    assert (site / "meterline" / "reports" / "templates" / "statement.html").is_file()  # the statement's template

