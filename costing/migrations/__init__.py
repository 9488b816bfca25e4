"""Alembic migrations of the ledger (run through costing.migrate, or `meterline db upgrade`)."""
