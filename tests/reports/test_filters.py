"""Filters: whole tag pairs only, and a department-limited viewer cannot widen its view."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from meterline.costing import create_engine, create_schema, from_pico
from meterline.reports.filters import Filters
from meterline.reports.ledger_queries import rollup_sums
from tests.seed import event, seed

NOW = datetime.now(UTC)
PERIOD = NOW.strftime("%Y-%m")


@pytest.fixture
def engine(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    create_schema(engine)
    seed(engine, [
        event("1", NOW, tags="env=prod"),
        event("2", NOW, tags="env=production"),
        event("4", NOW, tags="team=a,env=prod,feature=x_y"),
        event("8", NOW, tags="feature=x%y"),
        event("16", NOW, department="product", team="web", tags="env=prod"),
    ])  # fmt: skip
    return engine


def total(engine, filters: Filters) -> int:
    rows = rollup_sums(engine, PERIOD, [], filters.where(), tags=filters.tags)
    return int(from_pico(rows[0]["cost_pico"]))


def test_a_tag_filter_matches_whole_pairs_only(engine):
    assert total(engine, Filters(tags=("env=prod",))) == 1 + 4 + 16
    assert total(engine, Filters(tags=("env=prod", "feature=x_y"))) == 4
    assert total(engine, Filters(tags=("feature=x_y",))) == 4  # `_` is not a wildcard
    assert total(engine, Filters(tags=("feature=x%y",))) == 8  # nor is `%`


def test_a_limited_viewer_cannot_ask_for_another_department(engine):
    assert total(engine, Filters().within("product")) == 16
    assert total(engine, Filters(departments=("research",)).within("product")) == 0
    assert total(engine, Filters(departments=("research", "product")).within("product")) == 16
    assert total(engine, Filters(departments=("research",)).within(None)) == 1 + 2 + 4 + 8
