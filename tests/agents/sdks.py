"""One agent run with each real SDK, through the proxy: the OpenAI Agents SDK (Chat Completions
or Responses model, streamed or not) and pydantic-ai. Each has a function tool and the MCP
tools `lookup` and `summarize` (whose server calls the LLM again), and records in `run` every
proxied call it makes."""

from __future__ import annotations

from typing import Any

import httpx
import httpx2
import openai

from tests.agents.conftest import SERVER, TOOLS, Run

MODEL = "gpt-4o-mini"
INSTRUCTIONS = "You are a helpful assistant. Use the tools."


def weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


def llm_client(url: str, key: str, run: Run, headers: dict[str, str] | None = None, transport: Any = None) -> openai.AsyncOpenAI:
    http = run.client(httpx, transport=transport) if transport else run.client(httpx)
    # The SDK's own retries, as agents run with them: on a loaded 2-core host a connection is
    # now and then dropped before its answer's headers (httpx ReadError); the retried call is
    # the one recorded (the scorer follows the answers the client got).
    return openai.AsyncOpenAI(base_url=url, api_key=key, max_retries=2, http_client=http, default_headers=headers)


async def openai_agents(
    run: Run, llm_url: str, mcp_url: str, key: str, *, api: str, stream: bool, prompt: str,
    headers: dict[str, str] | None = None, llm_transport: Any = None,
) -> str:
    """One run of an OpenAI Agents SDK agent; its final output."""
    from agents import (
        Agent,
        OpenAIChatCompletionsModel,
        OpenAIResponsesModel,
        RunConfig,
        Runner,
        function_tool,
        set_tracing_disabled,
    )
    from agents.mcp import MCPServerStreamableHttp, create_static_tool_filter

    set_tracing_disabled(True)  # no trace export to OpenAI: nothing leaves the machine
    client = llm_client(llm_url, key, run, headers, llm_transport)
    model: Any = (
        OpenAIChatCompletionsModel(model=MODEL, openai_client=client)
        if api == "chat"
        else OpenAIResponsesModel(model=MODEL, openai_client=client)
    )

    def http_client(**kw: Any) -> httpx2.AsyncClient:
        return run.client(httpx2, **kw)

    server = MCPServerStreamableHttp(
        {
            "url": mcp_url,
            "headers": {"Authorization": f"Bearer {key}", **(headers or {})},
            "timeout": 30,
            "httpx_client_factory": http_client,
        },
        name=SERVER,
        tool_filter=create_static_tool_filter(allowed_tool_names=list(TOOLS)),
        client_session_timeout_seconds=30,
    )
    config = RunConfig(tracing_disabled=True)
    try:
        async with server:
            agent = Agent(
                name="assistant", instructions=INSTRUCTIONS, model=model,
                tools=[function_tool(weather)], mcp_servers=[server],
            )
            if stream:
                streamed = Runner.run_streamed(agent, prompt, run_config=config)
                async for _ in streamed.stream_events():
                    pass
                return str(streamed.final_output)
            result = await Runner.run(agent, prompt, run_config=config)
            return str(result.final_output)
    finally:
        await client.close()


async def pydantic_ai(
    run: Run, llm_url: str, mcp_url: str, key: str, *, prompt: str, api: str = "chat",
    headers: dict[str, str] | None = None, llm_transport: Any = None,
) -> str:
    """One run of a pydantic-ai agent with an MCP toolset; its output."""
    from pydantic_ai import Agent
    from pydantic_ai.mcp import MCPToolset
    from pydantic_ai.models.openai import OpenAIChatModel, OpenAIResponsesModel
    from pydantic_ai.providers.openai import OpenAIProvider

    client = llm_client(llm_url, key, run, headers, llm_transport)
    provider = OpenAIProvider(openai_client=client)
    model: Any = OpenAIChatModel(MODEL, provider=provider) if api == "chat" else OpenAIResponsesModel(MODEL, provider=provider)
    http = run.client(httpx2, headers={"Authorization": f"Bearer {key}", **(headers or {})})
    toolset = MCPToolset(mcp_url, http_client=http).filtered(lambda ctx, tool: tool.name in TOOLS)
    agent = Agent(model, instructions=INSTRUCTIONS, toolsets=[toolset], tools=[weather])
    try:
        async with agent:
            result = await agent.run(prompt)
        return str(result.output)
    finally:
        await client.close()
        await http.aclose()
