"""Attribution headers are cleaned and capped before they reach the ledger, and exported safely."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import httpx
import openai

from tests.conftest import run_cli


def test_hostile_attribution_headers_are_cleaned_capped_and_exported_as_plain_text(proxy):
    key = proxy.key()
    client = openai.OpenAI(base_url=proxy.url + "/v1", api_key=key, max_retries=0)
    hostile = {
        "X-Meterline-Project": '=HYPERLINK("http://evil.example","x")',
        "X-Meterline-User": "-@SUM(1+1)" + "u" * 500,
        "X-Meterline-Tags": "team=+cmd|' /C calc'!A0," + ",".join(f"k{i}={'v' * 150}" for i in range(25)),
    }
    client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], extra_headers=hostile
    )
    (row,) = proxy.events()
    assert row["project"] == '=HYPERLINK("http://evil.example","x")'  # stored as sent, it is data
    assert row["user"].startswith("-@SUM(1+1)") and len(row["user"]) == 128
    assert len(row["tags"]) <= 1024 and row["tags"].startswith("team=+cmd")

    month = datetime.now(UTC).strftime("%Y-%m")
    out = run_cli("export", "events", "--month", month, "--config", str(proxy.config_path)).stdout
    (exported,) = list(csv.DictReader(io.StringIO(out)))
    for column in ("project", "user"):
        assert exported[column] == row[column] or exported[column] == "'" + row[column]
        assert not exported[column].startswith(("=", "+", "-", "@"))


def test_a_repeated_attribution_header_counts_at_its_first_value(proxy):
    # As Starlette's Headers reads a repeated name: the first one sent.
    headers = [
        ("authorization", f"Bearer {proxy.key()}"),
        ("x-meterline-project", "first"),
        ("X-Meterline-Project", "second"),
    ]
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    r = httpx.post(proxy.url + "/v1/chat/completions", json=body, headers=headers)
    assert r.status_code == 200, r.text
    (row,) = proxy.events()
    assert row["project"] == "first"
