"""The metering proxy: a FastAPI app that forwards LLM and MCP calls to their upstreams and meters
each one. `create_app(settings)` builds it; `meterline serve` runs it under uvicorn."""

from .app import create_app

__all__ = ["create_app"]
