"""Fixtures of the ledger writer's tests (test_ingest.py, test_writer_process.py)."""

from __future__ import annotations

import pytest

from meterline.costing.spool import Spool


@pytest.fixture
def engine(ledger_engine):
    return ledger_engine


@pytest.fixture
def spool(tmp_path):
    s = Spool(tmp_path / "spool")
    yield s
    s.close()
