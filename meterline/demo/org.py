"""The demo's made-up company: departments, teams, people, what they use, and the config."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SIM_KEY_ENV = "MTL_DEMO_SIM_KEY"  # the simulated provider's key (what the proxy sends upstream)
MCP_AUTH_ENV = "MTL_DEMO_MCP_AUTH"
ADMIN_KEY_ENV = "METERLINE_ADMIN_KEY"


@dataclass(frozen=True)
class TeamPlan:
    """How one team uses AI: its people, projects, favourite models and habits.

    A demo call stands for a busy app's minute of calls, so its tokens are a minute's worth:
    long prompts (context, retrieved documents, history) and much shorter answers, as in any
    company's bill, where input tokens outnumber output tokens several times over."""

    id: str
    name: str
    department: str
    users: tuple[str, ...]
    projects: tuple[str, ...]
    models: tuple[tuple[str, int], ...]  # (model, weight)
    share: int  # relative amount of traffic
    agents: int = 0  # percent of its traffic that are agent runs (MCP tools)
    embeddings: int = 10  # percent that are embeddings
    streams: int = 20  # percent of chat calls streamed
    input: int = 60_000  # typical input tokens per call
    output: int = 4_000  # typical output tokens per call (reasoning models think on top)
    cache: int = 40  # percent of calls whose prompt starts with a cached prefix
    tags: tuple[str, ...] = ("env=prod",)


TEAMS = (
    TeamPlan("nlp", "NLP", "research", ("amara", "bo", "chen"), ("summarizer", "eval-harness"),
             (("gpt-4o", 3), ("gpt-4o-mini", 4), ("claude-sonnet-4-5", 2), ("o4-mini", 2)), share=22, agents=8,
             input=90_000, output=6_000, cache=35, tags=("env=prod", "env=dev", "feature=summaries")),
    TeamPlan("vision", "Vision", "research", ("dana", "eli"), ("captioning",),
             (("gpt-4o", 3), ("house-model", 1)), share=10, embeddings=20, input=50_000, output=3_000, cache=20, tags=("env=dev",)),
    TeamPlan("web", "Web", "product", ("fatima", "gus", "hana", "ivan"), ("search", "checkout-assistant"),
             (("gpt-4o-mini", 6), ("gpt-4o", 1)), share=26, embeddings=25, streams=45, input=70_000, output=2_500,
             cache=65, tags=("env=prod", "feature=search", "feature=assistant")),
    TeamPlan("mobile", "Mobile", "product", ("jo", "kai"), ("in-app-help",),
             (("gpt-4o-mini", 5),), share=9, streams=60, input=40_000, output=2_000, cache=60, tags=("env=prod",)),
    TeamPlan("helpdesk", "Helpdesk", "support", ("lea", "mo", "nia"), ("ticket-triage", "reply-drafts"),
             (("gpt-4o", 2), ("claude-sonnet-4-5", 2), ("o4-mini", 1)), share=18, agents=15, input=80_000, output=4_000,
             cache=50, tags=("env=prod", "feature=triage")),
    TeamPlan("fpa", "FP&A", "finance", ("omar", "pia"), ("forecasting",),
             (("gpt-4o", 2), ("gpt-4o-mini", 1), ("o4-mini", 2)), share=7, agents=10, input=120_000, output=5_000,
             cache=30, tags=("env=prod",)),
    TeamPlan("agents-infra", "Agents infrastructure", "platform", ("quinn",), ("tool-servers",),
             (("gpt-4o-mini", 1),), share=2, input=20_000, output=1_500, tags=("env=prod",)),
)  # fmt: skip
REASONING = {"o4-mini"}  # models that think before they answer (reasoning tokens, billed as output)

DEPARTMENTS = {
    "research": ("Research", "CC-100"),
    "product": ("Product", "CC-200"),
    "support": ("Customer Support", "CC-300"),
    "finance": ("Finance", "CC-400"),
    "platform": ("AI Platform", "CC-900"),
}

PRICES = [  # USD per 1M tokens (the public list prices of the models these stand for)
    {"model": "gpt-4o", "input_per_mtok": "2.50", "cached_input_per_mtok": "1.25", "output_per_mtok": "10.00"},
    {"model": "gpt-4o-mini", "input_per_mtok": "0.15", "cached_input_per_mtok": "0.075", "output_per_mtok": "0.60"},
    {"model": "claude-sonnet-4-5", "input_per_mtok": "3.00", "cached_input_per_mtok": "0.30", "output_per_mtok": "15.00"},
    {"model": "o4-mini", "input_per_mtok": "1.10", "cached_input_per_mtok": "0.275", "output_per_mtok": "4.40"},
    {"model": "text-embedding-3-small", "input_per_mtok": "0.02"},
]  # house-model has no price on purpose: the dashboard flags its calls as unpriced


@dataclass
class DemoConfig:
    folder: Path
    sim_url: str
    mcp_url: str
    budgets: dict[str, str] = field(default_factory=dict)  # team or department id -> monthly USD

    def as_dict(self) -> dict[str, Any]:
        depts = []
        for dept, (name, cc) in DEPARTMENTS.items():
            teams = [
                {"id": t.id, "name": t.name, **({"budget_usd_monthly": self.budgets[t.id]} if t.id in self.budgets else {})}
                for t in TEAMS
                if t.department == dept
            ]
            budget = {"budget_usd_monthly": self.budgets[dept]} if dept in self.budgets else {}
            depts.append({"id": dept, "name": name, "cost_center": cc, **budget, "teams": teams})
        return {
            "database": f"sqlite:///{(self.folder / 'ledger.db').resolve()}",
            "providers": {"sim": {"base_url": self.sim_url + "/v1", "api_key_env": SIM_KEY_ENV}},
            "models": [
                {"name": "gpt-4o", "provider": "sim"},
                {"name": "gpt-4o-mini", "provider": "sim"},
                {"name": "claude-sonnet-4-5", "provider": "sim"},
                {"name": "o4-mini", "provider": "sim"},
                {"name": "text-embedding-3-small", "provider": "sim"},
                {"name": "house-model", "provider": "sim", "upstream_model": "sim-large"},
            ],
            "prices": PRICES,
            "mcp_servers": {
                "tools": {
                    "url": self.mcp_url,
                    "auth_header_env": MCP_AUTH_ENV,
                    "price_per_call_usd": "0.002",
                    "tool_prices": {"summarize": "0.01"},
                }
            },
            "departments": depts,
            "chargeback": {
                "markup_percent": {"product": "5"},
                "shared_costs": [{"name": "platform on-call and vector store", "monthly_usd": "40"}],
            },
            "budgets": {"soft_threshold_percent": "80", "refresh_seconds": 0.5},
            "server": {"spool_dir": str((self.folder / "spool").resolve()), "flush_interval_ms": 100},
        }
