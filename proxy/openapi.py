"""Request bodies of the OpenAI routes, for the app's OpenAPI document.

The routes read raw bytes (the proxy forwards bodies as sent), so FastAPI cannot infer
these. They name only what the proxy itself reads or commonly forwards, and allow any other
field: the upstream, not the proxy, validates the rest.
"""

from __future__ import annotations

from typing import Any

_TEXT_OR_LIST: dict[str, Any] = {"anyOf": [{"type": "string"}, {"type": "array"}]}

_FIELDS: dict[str, dict[str, Any]] = {
    "chat": {
        "messages": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"role": {"type": "string"}, "content": _TEXT_OR_LIST},
                "required": ["role"],
            },
        },
    },
    "completions": {"prompt": _TEXT_OR_LIST},
    "responses": {"input": _TEXT_OR_LIST, "instructions": {"type": "string"}},
    "embeddings": {"input": _TEXT_OR_LIST},
}


def body(route: str) -> dict[str, Any]:
    """`openapi_extra` for a route: its JSON body's schema."""
    schema = {
        "type": "object",
        "required": ["model"],
        "properties": {
            "model": {"type": "string", "minLength": 1},
            "stream": {"type": "boolean"},
            "stream_options": {"type": "object", "properties": {"include_usage": {"type": "boolean"}}},
            "user": {"type": "string"},
            **_FIELDS[route],
        },
        "additionalProperties": True,
    }
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}
