"""Token estimates with tiktoken, for calls whose upstream reported no usage.

tiktoken would download its BPE files on first use; litellm ships the two we need, so we
point tiktoken's cache at them (what litellm itself does) and never touch the network.

Bounded: a text longer than SAMPLE_CHARS is counted on SAMPLE_SLICES evenly spaced slices of
it and scaled by its length, so no request or stream, however large, costs more than counting
SAMPLE_CHARS characters (tiktoken's cost grows faster than linearly on long runs without a
space, and a 20 MB stream once asked it for 35 GB). It is an estimate either way.

Where the tokenizer runs is the caller's choice (`Tokens`): `LOCAL`, in this process, or a
tokenizer_process.TokenizerProcess, in a child, which is what `meterline serve` uses. A loaded
o200k encoding holds ~44 MB for good, in whichever process counted first.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

# OpenAI's documented overhead for counting chat messages.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3

_O200K_PREFIXES = ("gpt-4o", "gpt-4.1", "gpt-5", "o1", "o3", "o4", "chatgpt-4o")

SAMPLE_CHARS = 64 * 1024  # the most text one estimate gives the tokenizer
SAMPLE_SLICES = 16


@lru_cache(maxsize=4)
def _encoding(name: str) -> Any:
    spec = importlib.util.find_spec("litellm")
    if spec and spec.submodule_search_locations:
        bundled = Path(next(iter(spec.submodule_search_locations))) / "litellm_core_utils" / "tokenizers"
        os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(bundled))
    import tiktoken

    enc = tiktoken.get_encoding(name)
    # The encoding keeps the Python dict it was built from (o200k: 200k bytes objects, ~23 MB
    # per process) only to pickle itself; the tokenizer proper has its own copy in Rust.
    if isinstance(getattr(enc, "_mergeable_ranks", None), dict):
        enc._mergeable_ranks = {}
        _release_freed_memory()
    return enc


def _release_freed_memory() -> None:
    """Hand what loading a tokenizer freed back to the OS (glibc keeps it for reuse otherwise:
    ~10 MB more of resident memory per process)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return  # not glibc: nothing to trim
    libc.malloc_trim(0)


def encoding_name(model: str) -> str:
    base = model.rsplit("/", 1)[-1]
    return "o200k_base" if base.startswith(_O200K_PREFIXES) else "cl100k_base"


class Tokens(Protocol):
    """Counts tokens: `lengths(encoding, texts)` is how many tokens each text is, in order."""

    def lengths(self, encoding: str, texts: list[str]) -> list[int]: ...


class LocalTokens:
    """tiktoken in this process."""

    def lengths(self, encoding: str, texts: list[str]) -> list[int]:
        enc = _encoding(encoding)
        return [len(enc.encode(t, disallowed_special=())) for t in texts]


LOCAL = LocalTokens()


def count_text(text: str, model: str, tokens: Tokens = LOCAL) -> int:
    """Tokens of `text`; over SAMPLE_CHARS, estimated from evenly spaced slices of it."""
    if not text:
        return 0
    if len(text) <= SAMPLE_CHARS:
        return tokens.lengths(encoding_name(model), [text])[0]
    size = SAMPLE_CHARS // SAMPLE_SLICES
    step = (len(text) - size) // (SAMPLE_SLICES - 1)
    counted = sum(tokens.lengths(encoding_name(model), [text[i * step : i * step + size] for i in range(SAMPLE_SLICES)]))
    return counted * len(text) // (size * SAMPLE_SLICES)


def count_texts(texts: list[str], model: str, tokens: Tokens = LOCAL) -> int:
    """Tokens of several texts, bounded like `count_text` however many there are."""
    if sum(len(t) for t in texts) <= SAMPLE_CHARS:
        counted = [t for t in texts if t]
        return sum(tokens.lengths(encoding_name(model), counted)) if counted else 0
    return count_text("\n".join(texts), model, tokens)


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part.get("text", "") for part in content if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def count_messages(messages: Any, model: str, tokens: Tokens = LOCAL) -> int:
    """Prompt tokens of a chat request, counted the way OpenAI's cookbook does."""
    if not isinstance(messages, list):
        return 0
    total = REPLY_PRIMING
    texts: list[str] = []
    for m in messages:
        if not isinstance(m, dict):
            continue
        total += TOKENS_PER_MESSAGE
        for key, value in m.items():
            if key == "content":
                texts.append(_content_text(value))
            elif isinstance(value, str):
                texts.append(value)
                if key == "name":
                    total += TOKENS_PER_NAME
    return total + count_texts(texts, model, tokens)


def count_input(body: dict[str, Any], model: str, tokens: Tokens = LOCAL) -> int:
    """Prompt tokens of any request shape the proxy serves (chat, responses, completions, embeddings)."""
    if "messages" in body:
        return count_messages(body["messages"], model, tokens)
    value = body.get("input", body.get("prompt"))
    if isinstance(value, str):
        return count_text(value, model, tokens)
    if isinstance(value, list):
        if value and all(isinstance(v, dict) for v in value):  # Responses API input items
            return count_messages(
                [{"role": v.get("role", "user"), "content": v.get("content", "")} for v in value], model, tokens
            )
        return count_texts([v for v in value if isinstance(v, str)], model, tokens)
    return 0
