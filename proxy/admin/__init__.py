"""The admin API under /admin: keys, usage, budgets, reports, agent runs, exports, closing months.

`Authorization: Bearer $METERLINE_ADMIN_KEY` may do everything; the finance key
(`server.finance_key_env`) may read usage, budgets, reports and exports and close months
(proxy/auth.py). Every route calls the same library functions as the CLI: costing/keys.py for
keys, reports/ for what is read, costing/months.py for closing. docs/admin-api.md has them all.
"""

from __future__ import annotations

from fastapi import APIRouter

from . import credits, exports, guards, keys, reports, runs, usage

router = APIRouter(prefix="/admin")
for _module in (keys, credits, usage, reports, runs, exports, guards):
    router.include_router(_module.router)

__all__ = ["router"]
