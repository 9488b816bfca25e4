"""The snippets of docs/agent-runs.md ("How calls join a run") run as written against
`meterline serve`, with only the address, the key and the MCP server's name replaced, and the
calls they make form one run in the ledger."""

from __future__ import annotations

import inspect
import re
from typing import Any

import pytest

from tests.agents.conftest import SERVER, Stack
from tests.conftest import ROOT

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
    stack = make_stack()
    trace_id = run_snippet("An OpenTelemetry-instrumented client", stack)()
    (row,) = the_run(stack)
    assert (row["trace_id"], row["link"]) == (trace_id, "traceparent")
