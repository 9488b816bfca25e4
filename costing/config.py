"""Typed configuration, read once from YAML and the environment.

Precedence: `--config PATH`, else `$METERLINE_CONFIG`, else `./config.yaml`.
`$METERLINE_DATABASE_URL` overrides `database:`. Provider secrets are read from the
environment variables the config names (`api_key_env`), here and nowhere else, so the
rest of the code never touches `os.environ`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from .errors import ConfigError
from .months import is_month

DEFAULT_CONFIG = "config.yaml"
MIB = 1024 * 1024


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProviderConfig(_Section):
    kind: Literal["openai", "litellm"] = "openai"
    base_url: str | None = None
    api_key_env: str | None = None
    connect_timeout: float = Field(10.0, gt=0)
    read_timeout: float = Field(600.0, gt=0)
    api_key: SecretStr | None = Field(None, exclude=True)  # resolved from api_key_env


class ModelConfig(_Section):
    name: str  # exact name or glob pattern (`gpt-4o*`)
    provider: str
    upstream_model: str | None = None
    aliases: list[str] = []


class RatesConfig(_Section):
    """USD per 1M tokens of each token dimension; unset: inherited (see costing/prices.py)."""

    input_per_mtok: Decimal | None = Field(None, ge=0)
    output_per_mtok: Decimal | None = Field(None, ge=0)
    cached_input_per_mtok: Decimal | None = Field(None, ge=0)
    cache_write_per_mtok: Decimal | None = Field(None, ge=0)  # 5-minute cache writes
    cache_write_1h_per_mtok: Decimal | None = Field(None, ge=0)
    input_audio_per_mtok: Decimal | None = Field(None, ge=0)
    output_audio_per_mtok: Decimal | None = Field(None, ge=0)
    input_image_per_mtok: Decimal | None = Field(None, ge=0)
    output_image_per_mtok: Decimal | None = Field(None, ge=0)
    reasoning_per_mtok: Decimal | None = Field(None, ge=0)  # unset: reasoning is billed as output


class LongContextConfig(RatesConfig):
    """Rates once a call's prompt passes `above_input_tokens`: for the whole call."""

    above_input_tokens: int = Field(gt=0)
    tiers: dict[str, RatesConfig] = {}


class PriceConfig(RatesConfig):
    model: str
    input_per_mtok: Decimal = Field(ge=0)
    output_per_mtok: Decimal = Field(Decimal(0), ge=0)
    effective_from: date | None = None
    tiers: dict[str, RatesConfig] = {}  # service tiers as responses name them: priority, flex
    long_context: list[LongContextConfig] = []
    web_search_per_1k_calls: Decimal | None = Field(None, ge=0)
    file_search_per_1k_calls: Decimal | None = Field(None, ge=0)
    code_interpreter_per_1k_calls: Decimal | None = Field(None, ge=0)


class MCPServerConfig(_Section):
    url: str
    auth_header_env: str | None = None  # env var holding the `Authorization` value sent upstream
    price_per_call_usd: Decimal | None = Field(None, ge=0)
    tool_prices: dict[str, Decimal] = {}
    method_prices: dict[str, Decimal] = {}
    connect_timeout: float = Field(10.0, gt=0)
    read_timeout: float = Field(300.0, gt=0)
    auth_header: SecretStr | None = Field(None, exclude=True)


class TeamConfig(_Section):
    id: str
    name: str | None = None
    budget_usd_monthly: Decimal | None = Field(None, ge=0)
    require_credits: bool = False  # refused (429 credits_exhausted) once its credit balance is empty
    credit_alerts_usd: list[Decimal] = []  # alert when its credit balance falls below each amount


class DepartmentConfig(_Section):
    id: str
    name: str | None = None
    cost_center: str = ""
    budget_usd_monthly: Decimal | None = Field(None, ge=0)
    require_credits: bool = False
    credit_alerts_usd: list[Decimal] = []
    teams: list[TeamConfig] = []


class CreditGrantConfig(_Section):
    """A grant that calls draw down before anything is billed (costing/credits.py)."""

    id: str = Field(min_length=1, max_length=64)
    department: str | None = None
    team: str | None = None
    amount_usd: Decimal = Field(ge=0, le=Decimal(1_000_000), decimal_places=12)
    effective_from: datetime  # a date is its first instant (UTC)
    expires: datetime | None = None  # the instant it stops counting; a date: its first instant
    priority: int = 0  # lower first; then the earliest to expire
    recurring: Literal["monthly"] | None = None
    rollover_max_usd: Decimal | None = Field(None, ge=0, decimal_places=12)

    @field_validator("effective_from", "expires", mode="before")
    @classmethod
    def _instant(cls, v: object) -> object:
        if isinstance(v, date) and not isinstance(v, datetime):
            return datetime(v.year, v.month, v.day, tzinfo=UTC)
        return v

    @field_validator("effective_from", "expires")
    @classmethod
    def _utc(cls, v: datetime | None) -> datetime | None:
        if v is None:
            return v
        return v.replace(tzinfo=UTC) if v.tzinfo is None else v.astimezone(UTC)

    @model_validator(mode="after")
    def _check(self) -> CreditGrantConfig:
        if (self.department is None) == (self.team is None):
            raise ValueError(f"credits.{self.id}: give either `department` or `team`")
        if self.rollover_max_usd is not None and self.recurring is None:
            raise ValueError(f"credits.{self.id}: rollover_max_usd needs `recurring: monthly`")
        if self.expires is not None and self.expires <= self.effective_from:
            raise ValueError(f"credits.{self.id}: expires must come after effective_from")
        return self


class TierConfig(_Section):
    up_to: Decimal | None = Field(None, gt=0)  # units of the month (Mtok or calls) this tier ends at; None: the rest
    rate_usd: Decimal = Field(ge=0)  # per unit


class RateConfig(_Section):
    """What one model, provider or tool is charged at on a rate card (the first that matches)."""

    model: str | None = None  # exact name or glob
    provider: str | None = None
    tool: str | None = None
    kind: Literal["llm", "embedding", "mcp"] | None = None
    unit: Literal["mtok", "call"] = "mtok"  # a million tokens (input + output), or a call
    flat_usd: Decimal | None = Field(None, ge=0)  # per unit
    graduated: list[TierConfig] = []  # the month's first units at the first tier's rate, the next at the next...
    volume: list[TierConfig] = []  # every unit of the month at the rate of the tier the month's total reaches

    @model_validator(mode="after")
    def _one_mode(self) -> RateConfig:
        modes = sum(x for x in (self.flat_usd is not None, bool(self.graduated), bool(self.volume)))
        if modes != 1:
            raise ValueError("a rate needs exactly one of flat_usd, graduated and volume")
        for tiers in (self.graduated, self.volume):
            ends = [t.up_to for t in tiers]
            if tiers and (ends[-1] is not None or any(e is None for e in ends[:-1])):
                raise ValueError("tiers: every tier but the last needs `up_to`; the last has none")
            if any(a is not None and b is not None and b <= a for a, b in zip(ends, ends[1:], strict=False)):
                raise ValueError("tiers: `up_to` must grow from tier to tier")
        return self


class RateCardConfig(_Section):
    """What a department is charged when it is not the cost (costing/rate_cards.py)."""

    department: str
    effective_from: date = date(1970, 1, 1)  # from this day (UTC) on, until a later card of the department
    rates: list[RateConfig] = []
    commitment_usd_monthly: Decimal | None = Field(None, ge=0)  # a shortfall below it is billed as its own line


class SharedCost(_Section):
    name: str
    monthly_usd: Decimal = Field(ge=0)


class ChargebackConfig(_Section):
    subcalls: Literal["root_caller", "key_owner"] = "root_caller"
    markup_percent: dict[str, Decimal] = {}  # department id -> percent (negative = discount)
    default_markup_percent: Decimal = Decimal(0)
    shared_costs: list[SharedCost] = []
    allocation: Literal["proportional", "even", "weights"] = "proportional"
    weights: dict[str, Decimal] = {}  # department id -> weight, for allocation: weights
    currency: str = Field("USD", pattern=r"^[A-Za-z]{3}$")  # ISO 4217
    exchange_rates: dict[str, Decimal] = {}  # "YYYY-MM" -> units of `currency` per USD

    @model_validator(mode="after")
    def _check_rules(self) -> ChargebackConfig:
        for dept, pct in self.markup_percent.items():
            if pct < -100:
                raise ValueError(f"markup_percent.{dept}: a discount cannot pass -100")
        if any(w < 0 for w in self.weights.values()):
            raise ValueError("weights: weights cannot be negative")
        if self.allocation == "weights" and not any(w > 0 for w in self.weights.values()):
            raise ValueError("weights: allocation: weights needs a positive weight per department")
        for month, rate in self.exchange_rates.items():
            if not is_month(month) or rate <= 0:
                raise ValueError(f"exchange_rates: expected `YYYY-MM: <rate above 0>`, got {month}: {rate}")
        return self


class BudgetsConfig(_Section):
    soft_threshold_percent: Decimal = Field(Decimal(80), gt=0, le=100)
    webhook_url: str | None = None
    keys: dict[str, Decimal] = {}  # key id -> monthly budget USD
    refresh_seconds: float = Field(1.0, gt=0)  # how often spend is re-read from the ledger
    default_output_tokens: int = Field(1000, ge=0)  # reserved for a model with no calls seen yet


RATE_LIMIT_FIELDS = (
    "requests_per_minute",
    "requests_per_hour",
    "tokens_per_minute",
    "tokens_per_hour",
    "usd_per_minute",
    "usd_per_hour",
)


class RateLimitsConfig(_Section):
    """Rate limits of one key, team or department (costing/rate_limits.py); unset: no limit."""

    requests_per_minute: int | None = Field(None, ge=0)
    requests_per_hour: int | None = Field(None, ge=0)
    tokens_per_minute: int | None = Field(None, ge=0)
    tokens_per_hour: int | None = Field(None, ge=0)
    usd_per_minute: Decimal | None = Field(None, ge=0, le=1_000_000)
    usd_per_hour: Decimal | None = Field(None, ge=0, le=1_000_000)

    def set(self) -> dict[str, int | Decimal]:
        """The limits that are set, by field name."""
        return {f: v for f in RATE_LIMIT_FIELDS if (v := getattr(self, f)) is not None}


class LimitConfig(RateLimitsConfig):
    """An entry of `limits:`: the rate limits of one team, department or key."""

    team: str | None = None
    department: str | None = None
    key: str | None = None  # a key id; keys' own limits are set through the admin API

    @model_validator(mode="after")
    def _one_scope(self) -> LimitConfig:
        named = [s for s in ("team", "department", "key") if getattr(self, s)]
        if len(named) != 1:
            raise ValueError("a limits entry names exactly one of team, department or key")
        if not self.set():
            raise ValueError(f"limits entry for {named[0]} {getattr(self, named[0])!r} sets no limit (e.g. requests_per_minute)")
        return self

    @property
    def scope(self) -> tuple[str, str]:
        for s in ("team", "department", "key"):
            v = getattr(self, s)
            if v:
                return (s, v)
        raise AssertionError("validated: one scope")


class AlertsConfig(_Section):
    """Spend anomalies (costing/anomalies.py): each team's and key's spend per hour against its
    own recent hours."""

    anomalies: bool = False
    webhook_url: str | None = None  # unset: budgets.webhook_url
    threshold: Decimal = Field(Decimal(6), gt=0)  # robust z-score (median / MAD) that is a spike
    min_usd: Decimal = Field(Decimal(1), ge=0)  # an hour under this is never a spike
    min_ratio: Decimal = Field(Decimal(3), ge=1)  # nor one under this multiple of its usual and its busiest hours
    check_seconds: float = Field(300.0, gt=0)  # how often a proxy checks the last full hour


class JetStreamConfig(_Section):
    """The NATS JetStream stream that holds the spool when `server.spool_url` is set
    (docs/durability.md#the-spool-in-nats-jetstream)."""

    stream: str = Field("METERLINE_SPOOL", pattern=r"^[A-Za-z0-9_-]+$")
    subject: str = Field("meterline.spool.events", pattern=r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")
    # Events the ledger refused for what they hold, kept for a person to look at.
    rejected_subject: str = Field("meterline.spool.rejected", pattern=r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")
    consumer: str = Field("meterline-ledger", pattern=r"^[A-Za-z0-9_-]+$")  # shared by every replica
    retention: Literal["workqueue", "limits"] = "workqueue"  # workqueue: an event leaves once in the ledger
    replicas: int = Field(1, ge=1, le=5)  # copies the NATS cluster keeps of each event
    max_age_hours: float = Field(7 * 24.0, gt=0)  # an event not written by then is dropped by the broker
    max_bytes: int = Field(8 * 1024 * MIB, gt=0)  # past it the broker refuses new events (calls get 503)
    ack_timeout_seconds: float = Field(10.0, gt=0)  # a response's wait for its event's acknowledgement
    connect_timeout_seconds: float = Field(5.0, gt=0)
    batch: int = Field(500, gt=0, le=10_000)  # events a writer takes from the stream per transaction
    redeliver_seconds: float = Field(10.0, ge=1)  # events a dead writer took go to another after this


class RunCapsOverride(_Section):
    max_cost_usd: Decimal | None = Field(None, gt=0)
    max_calls: int | None = Field(None, gt=0)
    max_depth: int | None = Field(None, ge=0)
    max_seconds: float | None = Field(None, gt=0)
    max_repeats: int | None = Field(None, gt=0)


class RunCapsConfig(_Section):
    """Caps for every agent run, however its calls were linked (costing/run_caps.py); unset: no cap."""

    max_cost_usd: Decimal | None = Field(None, gt=0)
    max_calls: int | None = Field(None, gt=0)
    max_depth: int | None = Field(None, ge=0)
    max_seconds: float | None = Field(None, gt=0)
    max_repeats: int | None = Field(None, gt=0)  # the same tool with the same arguments, in one run
    teams: dict[str, RunCapsOverride] = {}  # a team's own caps, over these

    def any(self) -> bool:
        return any(getattr(self, f) is not None for f in _RUN_CAPS)

    def merged(self, override: RunCapsOverride) -> RunCapsConfig:
        """These caps with a team's own over them."""
        mine = {f: getattr(override, f) for f in _RUN_CAPS if getattr(override, f) is not None}
        return self.model_copy(update={**mine, "teams": {}})


_RUN_CAPS = ("max_cost_usd", "max_calls", "max_depth", "max_seconds", "max_repeats")


class ServerConfig(_Section):
    max_body_bytes: int = Field(32 * MIB, gt=0)
    spool_dir: str = "meterline-spool"
    # nats://HOST:PORT[,nats://...]: the spool is kept in NATS JetStream instead of spool_dir.
    spool_url: str | None = Field(None, pattern=r"^(nats|tls)://\S+$")
    jetstream: JetStreamConfig = JetStreamConfig()
    flush_interval_ms: int = Field(200, gt=0)
    # Where the spool's segments are written into the database: a child process of each serving
    # process (its Python work off the GIL the event loop needs), or a thread in it.
    ledger_writer: Literal["process", "thread"] = "process"
    # Where tokens are counted for calls that came back without usage: a child process started
    # on the first such call (the encoding's ~44 MB stay out of the serving process), or in it.
    tokenizer: Literal["process", "thread"] = "process"
    key_refresh_seconds: float = Field(2.0, gt=0)
    store_prompts: bool = False
    admin_key_env: str = "METERLINE_ADMIN_KEY"
    admin_key: SecretStr | None = Field(None, exclude=True)
    # A second admin key that may only read (usage, budgets, reports, exports) and close months.
    finance_key_env: str = "METERLINE_FINANCE_KEY"
    finance_key: SecretStr | None = Field(None, exclude=True)
    # How long a rotated key's previous secret keeps working (`POST /admin/keys/{id}/rotate`).
    key_rotation_grace_seconds: float = Field(86400.0, ge=0)
    # Signs the payer a call tree's sub-calls carry in `tracestate`, so replicas agree on it;
    # unset: derived from the admin key, and with neither, sub-calls are linked in-process only.
    trace_secret_env: str = "METERLINE_TRACE_SECRET"
    trace_secret: SecretStr | None = Field(None, exclude=True)
    # Caps that bound what one call can cost the proxy (docs/security.md). An upstream response
    # past max_response_bytes, or a stream past it or past max_stream_seconds, is cut off and
    # recorded as `upstream_error` with its tokens estimated.
    max_response_bytes: int = Field(128 * MIB, gt=0)
    max_stream_seconds: float = Field(3600.0, gt=0)
    max_sse_event_bytes: int = Field(4 * MIB, gt=0)  # past it, an event is passed on unread
    estimate_sample_bytes: int = Field(1 * MIB, gt=0)  # of a stream's events, kept for an estimate
    # The HTTP server (`meterline serve`): request line and headers, the time a client may take
    # to send them, and how long an idle keep-alive connection stays open.
    max_header_bytes: int = Field(64 * 1024, ge=1024)
    header_timeout_seconds: float = Field(10.0, gt=0)
    keep_alive_seconds: float = Field(5.0, gt=0)
    max_connections: int | None = Field(None, gt=0)  # past it, new connections get a 503


class ViewerConfig(_Section):
    department: str | None = None  # the one department this viewer sees (None: all)
    password_env: str | None = None  # password login: env var holding this viewer's password
    admin: bool = False  # may close months
    password: SecretStr | None = Field(None, exclude=True)  # resolved from password_env


class DashboardConfig(_Section):
    """Who may open the dashboard. With OIDC configured in Streamlit's secrets (`[auth]`),
    people sign in with `st.login` and are matched by email to `viewers` (or `admins`);
    otherwise they sign in with a user name and a password from the environment."""

    password_env: str = "METERLINE_DASHBOARD_PASSWORD"  # the admin user's password
    admin_user: str = "admin"
    admins: list[str] = []  # OIDC emails with admin rights (all departments, closing months)
    viewers: dict[str, ViewerConfig] = {}  # user name or OIDC email -> what they may see
    password: SecretStr | None = Field(None, exclude=True)


class TelemetryConfig(_Section):
    otlp_endpoint: str | None = None
    service_name: str = "meterline"


class Settings(_Section):
    database: str = "sqlite:///meterline.db"
    providers: dict[str, ProviderConfig] = {}
    models: list[ModelConfig] = []
    prices: list[PriceConfig] = []
    mcp_servers: dict[str, MCPServerConfig] = {}
    departments: list[DepartmentConfig] = []
    credits: list[CreditGrantConfig] = []
    rate_cards: list[RateCardConfig] = []
    chargeback: ChargebackConfig = ChargebackConfig()
    budgets: BudgetsConfig = BudgetsConfig()
    limits: list[LimitConfig] = []
    runs: RunCapsConfig = RunCapsConfig()
    alerts: AlertsConfig = AlertsConfig()
    server: ServerConfig = ServerConfig()
    telemetry: TelemetryConfig = TelemetryConfig()
    dashboard: DashboardConfig = DashboardConfig()
    path: str | None = Field(None, exclude=True)

    def secret_values(self) -> list[str]:
        """Every credential the config resolved, for `costing.redaction.Redactor`."""
        found = [p.api_key for p in self.providers.values()]
        found += [s.auth_header for s in self.mcp_servers.values()]
        found += [self.server.admin_key, self.server.finance_key, self.server.trace_secret]
        return [s.get_secret_value() for s in found if s is not None]

    @model_validator(mode="after")
    def _check_references(self) -> Settings:
        for i, m in enumerate(self.models):
            if m.provider not in self.providers:
                raise ValueError(f"models.{i}.provider: unknown provider {m.provider!r}")
        seen: set[str] = set()
        for d in self.departments:
            for t in d.teams:
                if t.id in seen:
                    raise ValueError(f"departments: team id {t.id!r} is used twice")
                seen.add(t.id)
        depts = {d.id for d in self.departments}
        scopes: set[tuple[str, str]] = set()
        for i, lim in enumerate(self.limits):
            kind, name = lim.scope
            if (kind == "team" and name not in seen) or (kind == "department" and name not in depts):
                raise ValueError(f"limits.{i}.{kind}: unknown {kind} {name!r}")
            if lim.scope in scopes:
                raise ValueError(f"limits.{i}: {kind} {name!r} has two entries")
            scopes.add(lim.scope)
        for user, v in self.dashboard.viewers.items():
            if v.department is not None and v.department not in depts:
                raise ValueError(f"dashboard.viewers.{user}.department: unknown department {v.department!r}")
        for name, ids in (("markup_percent", self.chargeback.markup_percent), ("weights", self.chargeback.weights)):
            unknown = sorted(set(ids) - depts)
            if unknown:
                raise ValueError(f"chargeback.{name}: unknown department {unknown[0]!r}")
        for i, card in enumerate(self.rate_cards):
            if card.department not in depts:
                raise ValueError(f"rate_cards.{i}.department: unknown department {card.department!r}")
        credit_ids: set[str] = set()
        for g in self.credits:
            if g.id in credit_ids:
                raise ValueError(f"credits: grant id {g.id!r} is used twice")
            credit_ids.add(g.id)
            if g.department is not None and g.department not in depts:
                raise ValueError(f"credits.{g.id}.department: unknown department {g.department!r}")
            if g.team is not None and g.team not in seen:
                raise ValueError(f"credits.{g.id}.team: unknown team {g.team!r}")
        for team in self.runs.teams:
            if team not in seen:
                raise ValueError(f"runs.teams.{team}: unknown team {team!r}")
        return self


def config_location(path: str | os.PathLike[str] | None = None, *, environ: Mapping[str, str] | None = None) -> Path:
    """The config file `load_settings(path)` reads: `path`, else `$METERLINE_CONFIG`, else ./config.yaml."""
    env = os.environ if environ is None else environ
    return Path(path or env.get("METERLINE_CONFIG") or DEFAULT_CONFIG)


def load_settings(
    path: str | os.PathLike[str] | None = None, *, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read and validate the config. Raises ConfigError with a one-line message."""
    env = os.environ if environ is None else environ
    p = config_location(path, environ=env)
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError("config file not found (use --config PATH or $METERLINE_CONFIG)", path=str(p)) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"not valid YAML{where}", path=str(p)) from None
    if not isinstance(raw, dict):
        raise ConfigError("the top level must be a mapping of sections", path=str(p))
    return settings_from_dict(raw, path=str(p), environ=env)


def settings_from_dict(
    raw: dict[str, Any], *, path: str | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    env = os.environ if environ is None else environ
    raw = dict(raw)
    if env.get("METERLINE_DATABASE_URL"):
        raw["database"] = env["METERLINE_DATABASE_URL"]
    try:
        settings = Settings.model_validate({**raw, "path": path})
    except ValidationError as e:
        err = e.errors()[0]
        key = ".".join(str(x) for x in err["loc"]) or None
        msg = err["msg"].removeprefix("Value error, ")
        raise ConfigError(msg, key=key if not msg.startswith(f"{key}:") else None, path=path) from None
    return _resolve_secrets(settings, env)


def _resolve_secrets(settings: Settings, env: dict[str, str] | Any) -> Settings:
    providers = {
        name: p.model_copy(update={"api_key": _secret(env, p.api_key_env)})
        for name, p in settings.providers.items()
    }
    servers = {
        name: s.model_copy(update={"auth_header": _secret(env, s.auth_header_env)})
        for name, s in settings.mcp_servers.items()
    }
    server = settings.server.model_copy(
        update={
            "admin_key": _secret(env, settings.server.admin_key_env),
            "finance_key": _secret(env, settings.server.finance_key_env),
            "trace_secret": _secret(env, settings.server.trace_secret_env),
        }
    )
    viewers = {
        name: v.model_copy(update={"password": _secret(env, v.password_env)})
        for name, v in settings.dashboard.viewers.items()
    }
    dashboard = settings.dashboard.model_copy(
        update={"password": _secret(env, settings.dashboard.password_env), "viewers": viewers}
    )
    return settings.model_copy(
        update={"providers": providers, "mcp_servers": servers, "server": server, "dashboard": dashboard}
    )


def _secret(env: Any, name: str | None) -> SecretStr | None:
    value = env.get(name) if name else None
    return SecretStr(value) if value else None
