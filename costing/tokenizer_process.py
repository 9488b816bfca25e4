"""The tokenizer in a child process: the serving process never loads an encoding.

A loaded o200k encoding keeps ~44 MB resident for the rest of a process's life (73 MB at its
peak while loading), and a serving process needs one only for calls whose upstream reported no
usage, a stream the client walked away from most often. In the serving process that put a
worker that had estimated once at 165-195 MB against 120-126 MB for one that had not. Here the
encodings load in a child, started on the first estimate, and the worker stays as it was.

The child counts; what to count (the request's texts, the slices of a long one) is decided in
the serving process by costing/estimate.py, so the answer is the same as counting in process.
If the child cannot be run at all, counting falls back to this process: an estimate is part of
a bill, and a call is never left unpriced for want of a child.
"""

from __future__ import annotations

import logging
from typing import Any

from .child_process import Child, ChildFailed, child_main
from .estimate import LOCAL

log = logging.getLogger("meterline.estimate")


class TokenizerProcess:
    """Token counts from a child process of this one (an estimate.Tokens)."""

    def __init__(self) -> None:
        self.child = Child("tokenizer", "costing.tokenizer_process", {}, bare=True)  # tiktoken alone: no SQLAlchemy
        self._local = False

    def lengths(self, encoding: str, texts: list[str]) -> list[int]:
        if not self._local:
            try:
                return [int(n) for n in self.child.call({"op": "count", "encoding": encoding, "texts": texts})["lengths"]]
            except TypeError:
                pass  # a text that cannot be sent as UTF-8 (a lone surrogate): counted here, as tiktoken would
            except (ChildFailed, OSError) as e:  # OSError: ChildGone too
                self._local = True  # for good: a child that fails twice in a row would fail again
                log.error("tokenizer process failed (%s); counting tokens in this process from now on", e)
        return LOCAL.lengths(encoding, texts)

    def close(self) -> None:
        self.child.close()


class _Session:
    def __init__(self, hello: dict[str, Any]):
        pass

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "lengths": LOCAL.lengths(str(request["encoding"]), [str(t) for t in request["texts"]])}

    def close(self) -> None:
        pass


def main() -> None:
    child_main(_Session)


if __name__ == "__main__":
    main()


__all__ = ["TokenizerProcess"]
