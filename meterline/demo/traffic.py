"""A month of plausible traffic, sent through the real proxy with the openai and mcp SDKs.

`plan` lays the calls out in time (working hours and weekdays busier, a little growth over
the month); `drive` sends them in that order, a few at a time, moving the proxy's clock to
each call's planned time first, so the ledger records the month as if it had happened.
"""

from __future__ import annotations

import asyncio
import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx2
import openai
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from openai.types.chat import ChatCompletionStreamOptionsParam

from .org import REASONING, TEAMS, TeamPlan

VOCAB = (
    "invoice customer order refund policy model latency quarter forecast ticket summary search result "
    "product feature release risk review draft answer context document table chart user account"
).split()


@dataclass(frozen=True)
class Planned:
    ts: datetime
    team: TeamPlan
    kind: str  # chat | stream | estimated | embedding | responses | agent
    model: str
    user: str
    project: str
    tags: str
    words: int  # of the prompt's text (the tokens it stands for are `input`)
    input: int  # input tokens, `cached` of them from the provider's prompt cache
    output: int  # output tokens, `reasoning` of them spent thinking
    cached: int
    reasoning: int = 0


@dataclass
class Stats:
    sent: int = 0
    rejected: int = 0  # refused by a budget (429 budget_exceeded)
    failed: int = 0
    agent_runs: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)


class Clock:
    """The proxy's clock during the demo: the planned time of the call being sent."""

    def __init__(self, start: datetime):
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def _busy(ts: datetime) -> float:
    weekday = ts.weekday() < 5
    hours = 8 <= ts.hour < 19
    return (1.0 if weekday else 0.25) * (1.0 if hours else 0.2)


def plan(start: datetime, end: datetime, n: int, rng: random.Random) -> list[Planned]:
    """`n` calls between `start` and `end`, oldest first (an agent run counts as one)."""
    span = (end - start).total_seconds()
    weights = [t.share for t in TEAMS]
    out: list[Planned] = []
    while len(out) < n:
        ts = start + timedelta(seconds=rng.random() * span)
        growth = 0.9 + 0.2 * ts.day / 31  # busier towards each month's end, the same each month
        if rng.random() > _busy(ts) * growth / 1.2:
            continue
        team = rng.choices(TEAMS, weights)[0]
        out.append(_call(ts, team, rng))
    return sorted(out, key=lambda p: p.ts)


def _call(ts: datetime, team: TeamPlan, rng: random.Random) -> Planned:
    roll = rng.randrange(100)
    if roll < team.agents:
        kind = "agent"
    elif roll < team.agents + team.embeddings:
        kind = "embedding"
    elif rng.randrange(100) < 8:
        kind = "responses"
    elif rng.randrange(100) < team.streams:
        kind = "estimated" if rng.randrange(100) < 3 else "stream"
    else:
        kind = "chat"
    model = rng.choices([m for m, _ in team.models], [w for _, w in team.models])[0]
    if kind == "embedding":
        model = "text-embedding-3-small"
    tokens = max(500, int(rng.lognormvariate(0, 0.6) * team.input))
    answer = max(50, int(rng.lognormvariate(0, 0.7) * team.output))
    thinking = int(answer * rng.uniform(0.8, 2.5)) if model in REASONING and kind != "embedding" else 0
    cached = int(tokens * rng.uniform(0.4, 0.8)) if rng.randrange(100) < team.cache else 0
    return Planned(
        ts=ts,
        team=team,
        kind=kind,
        model=model,
        user=rng.choice(team.users),
        project=rng.choice(team.projects),
        tags=rng.choice(team.tags),
        words=rng.randrange(30, 120),
        input=tokens,
        output=answer + thinking,
        cached=cached,
        reasoning=thinking,
    )


def prompt(words: int, directive: str = "") -> str:
    text = " ".join(VOCAB[i % len(VOCAB)] for i in range(words))
    return f"{text} {directive}".strip()


class Driver:
    """Sends planned calls to the proxy as the teams' keys would."""

    def __init__(self, proxy_url: str, keys: dict[str, str], clock: Clock, concurrency: int = 8):
        self.proxy_url, self.keys, self.clock = proxy_url, keys, clock
        self.clients = {
            team: openai.AsyncOpenAI(base_url=proxy_url + "/v1", api_key=key, max_retries=0, timeout=60)
            for team, key in keys.items()
        }
        self.sem = asyncio.Semaphore(concurrency)
        self.stats = Stats()

    async def drive(
        self,
        planned: list[Planned],
        progress: Callable[[int], None] | None = None,
        new_month: Callable[[], None] | None = None,
    ) -> Stats:
        """Send `planned` in order; at a month's turn, let the calls in flight finish and call
        `new_month` (the proxy's budgets then re-read the new month before its first call)."""
        tasks: list[asyncio.Task[None]] = []
        month = planned[0].ts.strftime("%Y-%m") if planned else ""
        for i, p in enumerate(planned):
            if new_month is not None and p.ts.strftime("%Y-%m") != month:
                month = p.ts.strftime("%Y-%m")
                await asyncio.gather(*tasks)
                self.clock.now = p.ts
                await asyncio.to_thread(new_month)
            await self.sem.acquire()
            self.clock.now = p.ts
            tasks.append(asyncio.create_task(self._one(p)))
            if progress and i % 250 == 0:
                progress(i)
        await asyncio.gather(*tasks)
        for c in self.clients.values():
            await c.close()
        return self.stats

    async def _one(self, p: Planned) -> None:
        try:
            if p.kind == "agent":
                await self._agent(p)
            else:
                await self._llm(p, self._headers(p))
            self.stats.by_kind[p.kind] = self.stats.by_kind.get(p.kind, 0) + 1
        except openai.RateLimitError:
            self.stats.rejected += 1
        except openai.APIError:
            self.stats.failed += 1
        finally:
            self.stats.sent += 1
            self.sem.release()

    def _headers(self, p: Planned, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {"X-Meterline-User": p.user, "X-Meterline-Project": p.project, "X-Meterline-Tags": p.tags, **(extra or {})}

    async def _llm(self, p: Planned, headers: dict[str, str], *, share: int = 1) -> None:
        """One LLM call of `p` (a `share`th of its tokens, for one step of an agent run)."""
        c = self.clients[p.team.id]
        n = p.words
        if p.kind == "embedding":
            await c.embeddings.create(model=p.model, input=[prompt(n)] * 4, extra_headers=headers)
            return
        directive = f"sim:chunks=6,prompt_tokens={p.input // share},output_tokens={p.output // share}"
        directive += (f",cached={p.cached // share}" if p.cached else "") + (f",reasoning={p.reasoning // share}" if p.reasoning else "")
        if p.kind == "estimated":  # the proxy counts what it sees: give it a real prompt and answer
            directive = directive.replace("chunks=6", "chunks=400") + ",no_usage=1"
            n = 1500
        if p.kind == "responses":
            await c.responses.create(model=p.model, input=prompt(n, directive), extra_headers=headers)
            return
        messages: list[Any] = [
            {"role": "system", "content": "You are a helpful assistant for the " + p.project + " project."},
            {"role": "user", "content": prompt(n, directive)},
        ]
        if p.kind in ("stream", "estimated"):
            options: ChatCompletionStreamOptionsParam | None = {"include_usage": True} if p.kind == "stream" else None
            stream = await c.chat.completions.create(
                model=p.model, messages=messages, stream=True, stream_options=options, extra_headers=headers
            )
            async for _ in stream:
                pass
            return
        await c.chat.completions.create(model=p.model, messages=messages, extra_headers=headers)

    async def _agent(self, p: Planned) -> None:
        """An agent run: plan with the LLM, call tools (one summarizes with LLM sub-calls), answer."""
        trace = secrets.token_hex(16)
        tp = f"00-{trace}-{secrets.token_hex(8)}-01"
        headers = self._headers(p, {"traceparent": tp})
        rng = random.Random(trace)
        chat = Planned(**{**p.__dict__, "kind": "chat"})
        await self._llm(chat, headers, share=2)
        http_headers = {"Authorization": f"Bearer {self.keys[p.team.id]}", **headers}
        try:
            # No CA bundle for plain http: building a CA-loaded SSL context per run was a
            # tenth of the demo's CPU.
            async with httpx2.AsyncClient(headers=http_headers, timeout=60, verify=self.proxy_url.startswith("https:")) as http:
                transport = streamable_http_client(self.proxy_url + "/mcp/tools", http_client=http)
                async with Client(transport, mode="auto") as client:
                    await client.call_tool("echo", {"text": "look up " + p.project})
                    for _ in range(rng.randrange(1, 3)):
                        await client.call_tool("summarize", {"text": prompt(60), "calls": rng.randrange(1, 4)})
                    if rng.randrange(10) == 0:
                        await client.call_tool("fail", {})
                    if rng.randrange(3) == 0:
                        await client.call_tool("add", {"a": rng.randrange(100), "b": rng.randrange(100)})
        except (MCPError, httpx2.HTTPError, ExceptionGroup):  # e.g. the team's budget refused the run
            self.stats.rejected += 1
            return
        await self._llm(chat, headers, share=3)
        self.stats.agent_runs += 1


__all__ = ["Clock", "Driver", "Planned", "Stats", "plan", "prompt"]
