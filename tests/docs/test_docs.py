"""The docs stay true to the code: every setting and every command is documented, the CLI
reference is what the CLI prints today, and no link points nowhere (as Datasette's test_docs)."""

from __future__ import annotations

import re
import subprocess
import sys
import typing
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
import typer
from pydantic import BaseModel

from meterline.cli import app
from meterline.costing.config import Settings
from meterline.proxy.upstream import DROP_RESPONSE_HEADERS, FORWARD_REQUEST_HEADERS

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
README_LIMIT = 12_000


def _model_in(annotation: object) -> type[BaseModel] | None:
    """The pydantic model a field holds, directly or as the values of a list, dict or union."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        model = _model_in(arg)
        if model is not None:
            return model
    return None


def setting_paths(model: type[BaseModel] = Settings, prefix: str = "") -> Iterator[str]:
    """Dotted paths of every setting; a list or a mapping adds no segment. Fields excluded from
    the model's dump (secrets resolved from the environment, the file's own path) are not
    settings a user writes."""
    for name, field in model.model_fields.items():
        if field.exclude:
            continue
        yield prefix + name
        inner = _model_in(field.annotation)
        if inner is not None:
            yield from setting_paths(inner, f"{prefix}{name}.")


def command_paths() -> Iterator[str]:
    def walk(command: typing.Any, path: str) -> Iterator[str]:
        yield path
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            if not sub.hidden:
                yield from walk(sub, f"{path} {name}")

    return walk(typer.main.get_command(app), "meterline")


def test_setting_paths_walk_nested_models() -> None:
    paths = set(setting_paths())
    assert {"database", "providers.kind", "departments.teams.budget_usd_monthly", "dashboard.viewers.department"} <= paths
    assert "providers.api_key" not in paths  # resolved from api_key_env, never written


def test_every_setting_is_documented() -> None:
    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    missing = [p for p in setting_paths() if f"`{p}`" not in text]
    assert not missing, f"add these settings to docs/configuration.md: {missing}"


def test_every_command_is_in_the_cli_reference() -> None:
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    missing = [c for c in command_paths() if f"## {c}\n" not in text]
    assert not missing, f"docs/cli.md lacks {missing}: run `python -m cogapp -r docs/cli.md`"


def test_cli_reference_is_generated_from_the_current_cli() -> None:
    check = subprocess.run(
        [sys.executable, "-m", "cogapp", "--check", str(DOCS / "cli.md")], capture_output=True, text=True, cwd=ROOT
    )
    assert check.returncode == 0, (
        f"docs/cli.md is out of date: run `python -m cogapp -r docs/cli.md`\n{check.stdout}{check.stderr}"
    )


def test_readme_is_a_front_door() -> None:
    size = len(README.read_text(encoding="utf-8"))
    assert size < README_LIMIT, f"README.md has {size} characters; move reference material into docs/"


_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def broken_links(page: Path) -> list[str]:
    """Relative links of a Markdown page whose file does not exist (anchors are not checked)."""
    broken = []
    for target in _LINK.findall(page.read_text(encoding="utf-8")):
        url = urlparse(target)
        if url.scheme or target.startswith("#"):
            continue
        if not (page.parent / unquote(url.path)).exists():
            broken.append(target)
    return broken


@pytest.mark.parametrize("page", _pages(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(page: Path) -> None:
    broken = broken_links(page)
    assert not broken, f"{page.name} links to missing files: {broken}"


def test_link_check_finds_a_broken_link(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("[ok](page.md) [gone](nowhere.md#x) [anchor](#top) [web](https://example.com)", encoding="utf-8")
    assert broken_links(page) == ["nowhere.md#x"]


def test_the_response_headers_never_relayed_are_the_ones_docs_http_lists() -> None:
    text = (DOCS / "http.md").read_text(encoding="utf-8")
    listed = re.search(r"those the proxy's server sets itself \(([^)]*)\)", text)
    assert listed is not None, "docs/http.md no longer says which upstream headers are dropped"
    assert set(re.findall(r"`([a-z-]+)`", listed.group(1))) == DROP_RESPONSE_HEADERS


def test_the_request_headers_passed_on_are_the_ones_docs_http_lists() -> None:
    text = (DOCS / "http.md").read_text(encoding="utf-8")
    listed = re.search(r"of the client's headers only these\s+\(([^)]*)\)", text)
    assert listed is not None, "docs/http.md no longer says which request headers reach a provider"
    assert set(re.findall(r"`([a-z-]+)`", listed.group(1))) == set(FORWARD_REQUEST_HEADERS)
