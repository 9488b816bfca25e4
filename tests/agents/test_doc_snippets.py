"""The snippets of docs/agent-runs.md ("How calls join a run") run as written against
`meterline serve`, with only the address, the key and the MCP server's name replaced, and the
calls they make form one run in the ledger."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from typing import Any

import pytest

from tests.agents.conftest import SERVER, Stack
from tests.conftest import ROOT

# A socket of one of the agent SDKs' HTTP clients is now and then left to the garbage collector
# (seen once in the full suite, in test_a_runs_cost_is_its_whole_tree...; its maker is not found yet):
# only this message, only here.
pytestmark = [
    pytest.mark.filterwarnings("ignore:unclosed transport <_SelectorSocketTransport:ResourceWarning"),
    pytest.mark.filterwarnings("ignore:Exception ignored in. <function _SelectorTransport.__del__:pytest.PytestUnraisableExceptionWarning"),
]

DOC = ROOT / "docs" / "agent-runs.md"


def snippet(heading: str) -> str:
    """The first python block after `### heading`."""
    text = DOC.read_text(encoding="utf-8")
    after = text[text.index(f"\n### {heading}\n") :]
    found = re.search(r"```python\n(.*?)```", after, re.S)
    assert found, f"no python snippet under {heading!r}"
    return found.group(1)


def run_snippet(heading: str, stack: Stack) -> Any:
    code = snippet(heading)
    for written in ('METERLINE = "http://meterline:4000"', 'KEY = "sk-meterline-your-virtual-key"'):
        assert written in code, f"the {heading} snippet no longer has {written!r}"
    code = (
        code.replace('METERLINE = "http://meterline:4000"', f'METERLINE = "{stack.proxy.url}"')
        .replace('KEY = "sk-meterline-your-virtual-key"', f'KEY = "{stack.agent_key}"')
        .replace("/mcp/github", f"/mcp/{SERVER}")
    )
    namespace: dict[str, Any] = {}
    exec(compile(code, f"{DOC}:{heading}", "exec"), namespace)  # noqa: S102 - the docs' own code
    return namespace["main"]


def the_run(stack: Stack) -> list[dict[str, Any]]:
    """The agent's LLM calls and tool calls, in order (discovery and tools/list left out)."""
    rows = [e for e in stack.events().values() if e["key_team"] == "nlp" and (e["kind"] == "llm" or e["tool"])]
    return sorted(rows, key=lambda e: e["ts"])


@pytest.mark.parametrize("heading", ["OpenAI Agents SDK", "pydantic-ai"])
async def test_an_agent_snippet_makes_one_run_with_no_instrumentation(make_stack, heading):
    stack = make_stack()
    main = run_snippet(heading, stack)
    assert inspect.iscoroutinefunction(main)
    assert await main()
    rows = the_run(stack)
    assert [(e["kind"], e["tool"]) for e in rows] == [("llm", ""), ("mcp", "echo"), ("llm", "")]
    assert len({e["trace_id"] for e in rows}) == 1, rows
    assert [e["link"] for e in rows] == ["", "tool_request", "continuation"]
    first, tool, second = rows
    assert (tool["parent_call_id"], second["parent_call_id"]) == (first["call_id"], first["call_id"])


def test_the_opentelemetry_snippet_names_the_run_by_its_trace(make_stack):
    """In a process of its own: a global TracerProvider makes the mcp 2.x client put its own
    spans in every later request's `_meta.traceparent`, which would change the other tests."""
    stack = make_stack()
    code = inspect.getsource(run_snippet) + inspect.getsource(snippet)
    script = (
        "from __future__ import annotations\nimport re, sys\nfrom pathlib import Path\nfrom typing import Any\n"
        f"DOC = Path({str(DOC)!r})\nSERVER = {SERVER!r}\n{code}\n"
        "class S:\n    class proxy:\n        url = sys.argv[1]\n    agent_key = sys.argv[2]\n"
        "print(run_snippet('An OpenTelemetry-instrumented client', S)())\n"
    )
    out = subprocess.run([sys.executable, "-c", script, stack.proxy.url, stack.agent_key],
                         capture_output=True, text=True, timeout=120, check=True)
    trace_id = out.stdout.split()[-1]
    (row,) = the_run(stack)
    # the client's span is no call of the ledger: the call is the root of a run with that trace
    assert (row["trace_id"], row["parent_call_id"], row["link"]) == (trace_id, "", "")
