"""`meterline keys`: issue, list, revoke and rotate virtual keys (the admin API's /admin/keys
calls the same functions in costing/keys.py)."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

import typer

from meterline.costing import (
    CostingError,
    Org,
    create_key,
    key_record,
    list_keys,
    revoke_key,
    rotate_key,
)

from .common import ConfigOption, fail, ledger, settings

keys_app = typer.Typer(no_args_is_help=True, help="Issue, list, revoke and rotate virtual keys.")

_RELATIVE = re.compile(r"^(\d+)([dh])$")


def parse_expiry(text: str, now: datetime | None = None) -> datetime:
    """`2027-01-01` (midnight UTC), an ISO 8601 time with a zone, or `30d` / `12h` from now."""
    now = now or datetime.now(UTC)
    m = _RELATIVE.match(text)
    if m:
        n = int(m.group(1))
        return now + (timedelta(days=n) if m.group(2) == "d" else timedelta(hours=n))
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
        ts = datetime.fromisoformat(text)
    except ValueError:
        fail(f"--expires: expected YYYY-MM-DD, an ISO 8601 time with a zone, or 30d / 12h; got {text!r}")
    if ts.tzinfo is None:
        fail(f"--expires: {text!r} has no time zone (add Z or +00:00)")
    return ts


def _issued(row: Any, secret: str, org: Org) -> dict[str, Any]:
    return {"key": secret, **key_record(row, org)}


@keys_app.command("create")
def keys_create(
    team: Annotated[str, typer.Option(help="team the key's spend is charged to")],
    name: Annotated[str, typer.Option(help="a label")] = "",
    project: Annotated[str, typer.Option(help="default project for its calls")] = "",
    model: Annotated[list[str] | None, typer.Option("--model", help="limit to these models (repeatable, globs ok)")] = None,
    budget: Annotated[str | None, typer.Option("--budget", help="the key's own monthly budget, USD")] = None,
    expires: Annotated[str | None, typer.Option("--expires", help="refused from then on: YYYY-MM-DD, ISO 8601, or 30d / 12h")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    config: ConfigOption = None,
) -> None:
    """Issue a virtual key; the secret is printed once and never stored."""
    s = settings(config)
    try:
        amount = Decimal(budget) if budget is not None else None
    except InvalidOperation:
        fail(f"--budget: expected an amount in USD, got {budget!r}")
    org = Org(s)
    try:
        row, secret = create_key(
            ledger(s), team=team, name=name, project=project, models=model or [], budget_usd=amount,
            expires_at=parse_expiry(expires) if expires else None, org=org,
        )  # fmt: skip
    except CostingError as e:
        fail(str(e))
    issued = _issued(row, secret, org)
    if as_json:
        typer.echo(json.dumps(issued))
        return
    expiry = f", expires {issued['expires_at']}" if issued["expires_at"] else ""
    typer.echo(f"{secret}\n(id {row.id}, team {team}, department {issued['department']}{expiry}; shown once, keep it safe)")


@keys_app.command("list")
def keys_list(
    team: Annotated[str | None, typer.Option("--team", help="only this team's keys")] = None,
    department: Annotated[str | None, typer.Option("--department", help="only keys of this department's teams")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    config: ConfigOption = None,
) -> None:
    """List keys (never their secrets), with their expiry and status."""
    s = settings(config)
    org = Org(s)
    teams = _teams(org, team, department)
    items = [key_record(r, org) for r in list_keys(ledger(s), teams=teams)]
    if as_json:
        typer.echo(json.dumps(items))
        return
    typer.echo(f"{'ID':<18} {'PREFIX':<12} {'TEAM':<16} {'NAME':<20} {'EXPIRES':<21} STATUS")
    for i in items:
        typer.echo(f"{i['id']:<18} {i['prefix']:<12} {i['team']:<16} {i['name']:<20} {i['expires_at'] or 'never':<21} {i['status']}")


def _teams(org: Org, team: str | None, department: str | None) -> list[str] | None:
    """The teams a --team / --department filter leaves (None: no filter)."""
    if department is not None and department not in org.departments:
        fail(f"--department: unknown department {department!r} (departments: {', '.join(sorted(org.departments)) or 'none'})")
    teams = None if department is None else [t.id for t in org.teams.values() if t.department == department]
    if team is not None:
        teams = [team] if teams is None or team in teams else []
    return teams


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="key id from `keys list`")], config: ConfigOption = None) -> None:
    """Revoke a key; every proxy refuses it within `server.key_refresh_seconds`."""
    try:
        revoke_key(ledger(settings(config)), key_id)
    except CostingError as e:
        fail(str(e))
    typer.echo(f"revoked {key_id}")


@keys_app.command("rotate")
def keys_rotate(
    key_id: Annotated[str, typer.Argument(help="key id from `keys list`")],
    grace_seconds: Annotated[
        float | None, typer.Option("--grace-seconds", min=0, help="how long the old secret keeps working (default: server.key_rotation_grace_seconds)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    config: ConfigOption = None,
) -> None:
    """A new secret for a key, same id and attribution; the old one works for a grace period."""
    s = settings(config)
    grace = s.server.key_rotation_grace_seconds if grace_seconds is None else grace_seconds
    try:
        row, secret = rotate_key(ledger(s), key_id, grace=timedelta(seconds=grace))
    except CostingError as e:
        fail(str(e))
    issued = _issued(row, secret, Org(s))
    if as_json:
        typer.echo(json.dumps(issued))
        return
    until = issued["previous_key_valid_until"]
    old = f"the old secret works until {until}" if until else "the old secret no longer works"
    typer.echo(f"{secret}\n(id {row.id}; shown once, keep it safe; {old})")
