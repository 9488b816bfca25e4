"""No provider key, virtual key, admin key or prompt text in logs, error bodies or the ledger."""

from __future__ import annotations

import secrets

import httpx
import openai
import sqlalchemy as sa
import yaml

from meterline.costing import create_engine
from tests.conftest import ADMIN_KEY, FINANCE_KEY, MCP_AUTH, PROVIDER_KEY, base_config, free_port
from tests.replicas.fleet import Replica, wait_for

PROMPT = "the-secret-plan-" + secrets.token_hex(4)


def test_secrets_and_prompts_stay_out_of_logs_error_bodies_and_the_ledger(tmp_path, upstream):
    models = base_config(tmp_path, upstream.url)["models"] + [
        {"name": "dead-model", "provider": "dead", "upstream_model": "gpt-4o-mini"},
        {"name": "slow-model", "provider": "slow", "upstream_model": "gpt-4o-mini"},
    ]
    dead = {"base_url": f"http://127.0.0.1:{free_port()}/v1", "api_key_env": "SIM_API_KEY", "connect_timeout": 1}
    slow = {"base_url": upstream.url + "/v1", "api_key_env": "SIM_API_KEY", "read_timeout": 0.5}
    replica = Replica(tmp_path, "p", upstream.url, f"sqlite:///{tmp_path / 'ledger.db'}", models=models)
    replica.cfg["providers"] |= {"dead": dead, "slow": slow}
    replica.config_path.write_text(yaml.safe_dump(replica.cfg))
    replica.start(log_level="debug")
    try:
        _, key = replica.create_key()
        models = replica.url + "/v1/models"
        wait_for("the key to be known", lambda: httpx.get(models, headers={"Authorization": f"Bearer {key}"}).status_code == 200)
        answers = list(failing_calls(replica, key))
        admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
        issued = httpx.post(replica.url + "/admin/keys", json={"team": "nlp"}, headers=admin).json()
        rotated = httpx.post(replica.url + f"/admin/keys/{issued['id']}/rotate", headers=admin).json()
        for secret in (issued["key"], rotated["key"]):
            assert httpx.get(models, headers={"Authorization": f"Bearer {secret}"}).status_code == 200
        listed = [httpx.get(replica.url + path, headers=admin) for path in ("/admin/keys", f"/admin/keys/{issued['id']}")]
        answers += [f"{r.status_code} {dict(r.headers)} {r.text}" for r in listed]  # only create and rotate show a secret
        r = httpx.post(replica.url + "/admin/ledger/flush", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
        assert r.status_code == 200
    finally:
        replica.stop()

    secrets_ = {
        "provider key": PROVIDER_KEY, "virtual key": key, "admin key": ADMIN_KEY, "MCP credential": MCP_AUTH.split()[1], "prompt": PROMPT,
        "key issued over the API": issued["key"], "its rotated secret": rotated["key"], "finance key": FINANCE_KEY,
    }  # fmt: skip
    engine = create_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    with engine.connect() as conn:
        ledger = repr(conn.execute(sa.text("SELECT * FROM events")).all())
        recorded = conn.execute(sa.text("SELECT model, status, http_status FROM events")).all()
        assert len(recorded) == 9, recorded  # every call that reached an upstream
    engine.dispose()
    places = {"log": replica.log(), "answers": "\n".join(answers), "ledger": ledger}
    assert "Application shutdown complete" in places["log"]  # the whole run, at --log-level debug
    for where, text in places.items():
        for what, value in secrets_.items():
            assert value not in text, f"{what} found in the {where}"


def failing_calls(replica: Replica, key: str):
    """Calls that end in every way a call can end; yields each answer's headers and body."""
    url = replica.url
    auth = {"Authorization": f"Bearer {key}"}

    def chat(model: str, content: str, stream: bool = False, **kw):
        body = {"model": model, "stream": stream, "messages": [{"role": "user", "content": f"{PROMPT} {content}"}]}
        return httpx.post(url + "/v1/chat/completions", json=body, timeout=30, **kw)

    for r in (
        chat("gpt-4o-mini", "fine", headers=auth),
        chat("gpt-4o-mini", "sim:chunks=3", stream=True, headers=auth),
        chat("gpt-4o-mini", "sim:status=500", headers=auth),
        chat("gpt-4o-mini", "sim:status=400", stream=True, headers=auth),
        chat("gpt-4o-mini", "sim:break_after=2", stream=True, headers=auth),
        chat("dead-model", "unreachable", headers=auth),
        chat("slow-model", "sim:hang=1", headers=auth),
        chat("slow-model", "sim:chunks=5,delay_ms=2000", stream=True, headers=auth),
        chat("no-such-model", "missing", headers=auth),
        chat("gpt-4o-mini", "wrong key", headers={"Authorization": f"Bearer {key[:-4]}abcd"}),
        chat("gpt-4o-mini", "admin key as a virtual key", headers={"Authorization": f"Bearer {ADMIN_KEY}"}),
        httpx.post(url + "/v1/chat/completions", content=f'{{"model": "gpt-4o-mini", "x": "{PROMPT}"'.encode(), headers=auth),
        httpx.post(url + "/v1/chat/completions", json={"model": ["gpt-4o-mini", PROMPT]}, headers=auth),
        httpx.post(url + "/admin/ledger/flush", headers={"Authorization": f"Bearer {key}"}),
        httpx.get(url + "/admin/reports/chargeback", params={"month": "2026-11"}, headers={"Authorization": f"Bearer {ADMIN_KEY}x"}),
    ):
        yield f"{r.status_code} {dict(r.headers)} {r.text}"
    client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
    try:
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": f"{PROMPT} sim:status=429"}])
    except openai.RateLimitError as e:
        yield str(e)
