"""Token estimates with tiktoken, for calls whose upstream reported no usage.

tiktoken would download its BPE files on first use; litellm ships the two we need, so we
point tiktoken's cache at them (what litellm itself does) and never touch the network.
"""

from __future__ import annotations

import importlib.util
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

# OpenAI's documented overhead for counting chat messages.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3

_O200K_PREFIXES = ("gpt-4o", "gpt-4.1", "gpt-5", "o1", "o3", "o4", "chatgpt-4o")


@lru_cache(maxsize=4)
def _encoding(name: str) -> Any:
    spec = importlib.util.find_spec("litellm")
    if spec and spec.submodule_search_locations:
        bundled = Path(next(iter(spec.submodule_search_locations))) / "litellm_core_utils" / "tokenizers"
        os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(bundled))
    import tiktoken

    return tiktoken.get_encoding(name)


def encoding_for(model: str) -> Any:
    base = model.rsplit("/", 1)[-1]
    return _encoding("o200k_base" if base.startswith(_O200K_PREFIXES) else "cl100k_base")


def count_text(text: str, model: str) -> int:
    return len(encoding_for(model).encode(text, disallowed_special=())) if text else 0


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part.get("text", "") for part in content if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def count_messages(messages: Any, model: str) -> int:
    """Prompt tokens of a chat request, counted the way OpenAI's cookbook does."""
    if not isinstance(messages, list):
        return 0
    total = REPLY_PRIMING
    for m in messages:
        if not isinstance(m, dict):
            continue
        total += TOKENS_PER_MESSAGE
        for key, value in m.items():
            if key == "content":
                total += count_text(_content_text(value), model)
            elif isinstance(value, str):
                total += count_text(value, model)
                if key == "name":
                    total += TOKENS_PER_NAME
    return total


def count_input(body: dict[str, Any], model: str) -> int:
    """Prompt tokens of any request shape the proxy serves (chat, responses, completions, embeddings)."""
    if "messages" in body:
        return count_messages(body["messages"], model)
    value = body.get("input", body.get("prompt"))
    if isinstance(value, str):
        return count_text(value, model)
    if isinstance(value, list):
        if value and all(isinstance(v, dict) for v in value):  # Responses API input items
            return count_messages(
                [{"role": v.get("role", "user"), "content": v.get("content", "")} for v in value], model
            )
        return sum(count_text(v, model) for v in value if isinstance(v, str))
    return 0
