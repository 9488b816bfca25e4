"""Rate limits count MCP calls too: a team over its requests per hour gets 429
`rate_limit_exceeded` on its next tools/call, before the server sees it, recorded `rejected`."""

from __future__ import annotations

from tests.proxy.test_mcp import mcp_config, tool_rows
from tests.proxy.test_mcp_streaming import call, post, scripted_server


async def test_an_mcp_call_over_a_requests_limit_is_refused_before_the_server(make_proxy):
    async with scripted_server() as (url, state):
        proxy = make_proxy(mcp_servers=mcp_config(url), limits=[{"team": "nlp", "requests_per_hour": 2}])
        headers = {"Authorization": f"Bearer {proxy.key('nlp')}"}
        for i in (1, 2):
            ok = await post(f"{proxy.url}/mcp/sim", json=call(i, "pieces"), headers=headers)
            assert ok.status_code == 200
        refused = await post(f"{proxy.url}/mcp/sim", json=call(3, "pieces"), headers=headers)
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "rate_limit_exceeded" and refused.json()["error"]["type"] == "requests"
        assert int(refused.headers["retry-after"]) >= 1 and refused.headers["x-ratelimit-remaining-requests"] == "0"
        assert len(state["requests"]) == 2  # the third never reached the server
        rows = tool_rows(proxy.events())
        assert [r["status"] for r in rows].count("rejected") == 1
