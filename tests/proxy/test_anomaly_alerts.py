"""A spend spike through the real proxy raises exactly one alert: one note, one log line, one
webhook POST and one count in /metrics, however many checks run during it; the admin API
lists it as open. The history before it is seeded; the spike is real calls of a key."""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, HTTPServer

import httpx
import openai
import pytest

from meterline.costing import anomalies
from tests.conftest import ADMIN_KEY
from tests.replicas.fleet import wait_for
from tests.seed import event, seed


@pytest.fixture
def hook():
    """A webhook receiver: the JSON bodies POSTed to it."""
    got: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook", got
    server.shutdown()
    server.server_close()


def test_a_runaway_key_raises_one_alert_with_webhook_log_and_metric(make_proxy, hook, caplog):
    url, posts = hook
    proxy = make_proxy(alerts={"anomalies": True, "check_seconds": 0.3, "webhook_url": url})
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    created = httpx.post(proxy.url + "/admin/keys", headers=admin, json={"team": "nlp", "name": "looping-agent"}).json()
    # Ten days of the key's ordinary spend: a few cents an hour in working hours.
    rng = random.Random(5)
    now = datetime.now(UTC)
    history = []
    for h in range(2, 10 * 24):
        ts = now - timedelta(hours=h)
        for _ in range(rng.randint(0, 4 if 8 <= ts.hour < 19 else 1)):
            history.append(event(Decimal("0.01"), ts, key_id=created["id"], team="nlp"))
    seed(proxy.engine, history)
    caplog.set_level(logging.WARNING, logger="meterline.anomalies")
    # The runaway: each call 200,000 prompt tokens of house-model at 1 USD per million.
    with openai.OpenAI(base_url=proxy.url + "/v1", api_key=created["key"], max_retries=0) as client:
        def loop(n: int) -> None:
            for _ in range(n):
                client.chat.completions.create(model="house-model", messages=[{"role": "user", "content": "sim:prompt_tokens=200000"}])

        loop(15)  # 3 USD in minutes
        proxy.flush()
        wait_for("the spike's alert", lambda: posts)
        loop(5)  # it goes on: later checks find it noted
        proxy.flush()
        time.sleep(1.5)  # several more checks
    assert len(posts) == 1, posts
    body = posts[0]
    assert body["kind"] == "spend_anomaly" and body["scope"] == "key" and body["id"] == created["id"]
    assert Decimal(body["spend_usd"]) >= Decimal(1) and "sim:" not in json.dumps(body)  # no prompt text
    assert len(anomalies.noted(proxy.engine, now - timedelta(days=1))) == 1
    lines = [r.getMessage() for r in caplog.records if r.name == "meterline.anomalies"]
    assert len(lines) == 1 and "spend anomaly" in lines[0] and created["id"] in lines[0]
    metrics = httpx.get(proxy.url + "/metrics").text
    assert f'meterline_spend_anomalies_total{{id="{created["id"]}",scope="key"}} 1.0' in metrics
    listed = httpx.get(proxy.url + "/admin/anomalies", headers=admin).json()["anomalies"]
    assert [(a["scope"], a["id"], a["open"]) for a in listed] == [("key", created["id"], True)]
