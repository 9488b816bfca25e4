"""The core imports nothing above it and no HTTP client, not even inside a function."""

from __future__ import annotations

import ast
from pathlib import Path

import meterline.costing

CORE = Path(meterline.costing.__file__).parent
ABOVE = ("meterline.proxy", "meterline.reports", "meterline.dashboard", "meterline.cli", "meterline.demo", "meterline.testing")
HTTP_CLIENTS = ("httpx", "aiohttp", "requests", "urllib3")


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


def test_no_core_module_imports_a_layer_above_it_or_an_http_client():
    found = {
        f"{p.relative_to(CORE)}: {name}"
        for p in CORE.rglob("*.py")
        for name in _imports(p)
        if name.startswith(ABOVE) or name.split(".")[0] in HTTP_CLIENTS
    }
    assert not found, "the core must not import these (budget webhooks are proxy/alerts.py's):\n" + "\n".join(sorted(found))


def test_the_check_sees_a_lazy_import(tmp_path):
    sample = tmp_path / "m.py"
    sample.write_text("def f():\n    import httpx\n    from meterline.proxy import app\n")
    assert _imports(sample) == ["httpx", "meterline.proxy"]
