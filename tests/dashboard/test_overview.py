"""The dashboard renders the seeded month and shows what reports compute."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import yaml
from streamlit.testing.v1 import AppTest

from costing import Org, create_engine, create_schema, settings_from_dict
from dashboard import APP_PATH
from reports import showback
from tests.conftest import base_config
from tests.seed import event, seed


@pytest.fixture
def seeded(tmp_path, monkeypatch):
    cfg = base_config(tmp_path, "http://127.0.0.1:9")
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    monkeypatch.setenv("METERLINE_CONFIG", str(path))
    engine = create_engine(cfg["database"])
    create_schema(engine)
    seed(engine, [
        event("1.250000", team="nlp"),
        event("0.000001", team="vision"),
        event("3.100000", department="product", team="web", cost_center="CC-200"),
    ])  # fmt: skip
    return settings_from_dict(cfg), engine


def test_overview_shows_the_months_total_and_teams(seeded):
    settings, engine = seeded
    at = AppTest.from_file(str(APP_PATH), default_timeout=30).run()
    assert not at.exception
    month = datetime.now(UTC).strftime("%Y-%m")
    expected = showback(engine, Org(settings), month)
    assert at.metric[0].value == f"${expected.total_usd:,.2f}" == "$4.35"
    table = at.dataframe[0].value
    assert set(table["team"]) == {"nlp", "vision", "web"}
    assert sorted(table["cost_usd"]) == ["0.000001", "1.250000", "3.100000"]
