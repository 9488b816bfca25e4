"""Tokens of calls without usage are counted in a child (`server.tokenizer: process`, the
default): the serving process never loads an encoding (~44 MB held for good), and the counts
are the ones counting in process gives."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import time
from pathlib import Path

import openai
import sqlalchemy as sa

from meterline.costing import child_process, create_engine
from meterline.costing.estimate import LOCAL, SAMPLE_CHARS, count_input, count_text
from meterline.costing.tokenizer_process import TokenizerProcess
from tests.conftest import free_port
from tests.proxy.test_durability import setup, start_serve
from tests.replicas.fleet import wait_for

TEXTS = ["hello there", "naïve café – ünïcödé, 日本語のテキスト", "<|endoftext|> is text here", "x" * 5000]


def test_the_childs_counts_are_the_ones_counted_in_process():
    tokens = TokenizerProcess()
    try:
        for encoding in ("o200k_base", "cl100k_base"):
            assert tokens.lengths(encoding, TEXTS) == LOCAL.lengths(encoding, TEXTS)
        long = "the quick brown fox " * (SAMPLE_CHARS // 5)  # counted on slices, scaled
        assert count_text(long, "gpt-4o-mini", tokens) == count_text(long, "gpt-4o-mini") > 0
        body = {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": TEXTS[1], "name": "ann"}]}
        assert count_input(body, "gpt-4o", tokens) == count_input(body, "gpt-4o")
        assert tokens.child.pid not in (None, os.getpid())
        # A bare child: tiktoken, not the core's imports (SQLAlchemy's compiled parts, ~50 MB).
        maps = Path(f"/proc/{tokens.child.pid}/maps").read_text()
        assert "_tiktoken" in maps and "sqlalchemy" not in maps
    finally:
        tokens.close()


def test_a_text_the_pipe_cannot_carry_is_counted_here_and_the_child_goes_on():
    tokens = TokenizerProcess()
    try:
        lone = "half a pair \ud800 here"  # not UTF-8: no frame can carry it
        assert tokens.lengths("o200k_base", [lone]) == LOCAL.lengths("o200k_base", [lone])
        assert tokens.lengths("o200k_base", ["one two"]) == [2] and tokens.child.restarts == 0
    finally:
        tokens.close()


def test_a_killed_child_is_replaced_and_the_count_still_answered():
    tokens = TokenizerProcess()
    try:
        assert tokens.lengths("o200k_base", ["one two"]) == [2]
        first = tokens.child.pid
        os.kill(first, signal.SIGKILL)
        time.sleep(0.2)
        assert tokens.lengths("o200k_base", ["one two three"]) == [3]
        assert tokens.child.restarts == 1 and tokens.child.pid != first
    finally:
        tokens.close()


def test_a_child_that_cannot_run_falls_back_to_counting_here_with_one_error(monkeypatch, caplog):
    monkeypatch.setattr(child_process.sys, "executable", "/nonexistent/python")
    tokens = TokenizerProcess()
    with caplog.at_level(logging.ERROR, logger="meterline.estimate"):
        assert tokens.lengths("cl100k_base", TEXTS) == LOCAL.lengths("cl100k_base", TEXTS)
        assert tokens.lengths("cl100k_base", ["again"]) == [1]
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == ["tokenizer process failed"]
    tokens.close()


def test_meterline_serve_estimates_a_stream_without_usage_and_never_loads_a_tokenizer(tmp_path: Path, upstream):
    cfg, config_path, key = setup(tmp_path, upstream.url)
    port = free_port()
    proc = start_serve(config_path, port)
    try:
        c = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0)
        prompt = "sim:no_usage=1,chunks=6 " + TEXTS[1]
        with c.chat.completions.with_streaming_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": prompt}], stream=True
        ) as r:
            call_id = r.headers["x-meterline-call-id"]
            body = r.read()
        assert b"[DONE]" in body

        def row():
            engine = create_engine(cfg["database"])
            try:
                with engine.connect() as conn:
                    return conn.execute(
                        sa.text("SELECT usage_source, input_tokens, output_tokens FROM events WHERE call_id = :c"), {"c": call_id}
                    ).first()
            finally:
                engine.dispose()

        wait_for("the call in the ledger", lambda: row() is not None, timeout=30)
        source, input_tokens, output_tokens = row()
        text = "".join(
            choice["delta"].get("content") or ""
            for line in body.decode().splitlines()
            if line.startswith("data: {")
            for choice in json.loads(line[6:])["choices"]
        )
        assert source == "estimated"
        assert output_tokens == count_text(text, "gpt-4o-mini") > 0
        assert input_tokens == count_input({"messages": [{"role": "user", "content": prompt}]}, "gpt-4o-mini")
        # The encoding lives in the tokenizer child, not in the serving process.
        assert not _loaded_tiktoken(proc.pid)
        (child,) = _tokenizer_children(proc.pid)
        assert _loaded_tiktoken(child)
    finally:
        proc.terminate()
        assert proc.wait(timeout=60) == 0


def _loaded_tiktoken(pid: int) -> bool:
    return "_tiktoken" in Path(f"/proc/{pid}/maps").read_text()


def _tokenizer_children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-ww", "-o", "pid=,args=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(line.split()[0]) for line in out.splitlines() if "tokenizer_process" in line]
