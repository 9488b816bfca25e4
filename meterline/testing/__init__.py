"""Simulated upstreams for the demo, the bench and the tests: an OpenAI-compatible (and Anthropic
Messages) provider, and an MCP tool server whose tools make LLM sub-calls.

    python -m meterline.testing.upstream --port 8900      # the provider, in the foreground

Names are loaded on first use, so running one simulator does not import the other's SDKs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .mcp_server import MCPSimServer
    from .upstream import SimServer

_WHERE = {"SimServer": ".upstream", "MCPSimServer": ".mcp_server"}

__all__ = ["MCPSimServer", "SimServer"]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
