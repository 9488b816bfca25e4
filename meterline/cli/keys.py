"""`meterline keys`: issue, list and revoke virtual keys."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from meterline.costing import CostingError, Org, create_key, list_keys, revoke_key

from .common import ConfigOption, fail, ledger, settings

keys_app = typer.Typer(no_args_is_help=True, help="Issue, list and revoke virtual keys.")


@keys_app.command("create")
def keys_create(
    team: Annotated[str, typer.Option(help="team the key's spend is charged to")],
    name: Annotated[str, typer.Option(help="a label")] = "",
    project: Annotated[str, typer.Option(help="default project for its calls")] = "",
    model: Annotated[list[str] | None, typer.Option("--model", help="limit to these models (repeatable, globs ok)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    config: ConfigOption = None,
) -> None:
    """Issue a virtual key; the secret is printed once and never stored."""
    s = settings(config)
    try:
        team_info = Org(s).team(team)
    except CostingError as e:
        fail(str(e))
    row, secret = create_key(ledger(s), team=team, name=name, project=project, models=model or [])
    if as_json:
        typer.echo(json.dumps({"id": row.id, "key": secret, "team": team, "department": team_info.department}))
    else:
        typer.echo(f"{secret}\n(id {row.id}, team {team}, department {team_info.department}; shown once, keep it safe)")


@keys_app.command("list")
def keys_list(as_json: Annotated[bool, typer.Option("--json")] = False, config: ConfigOption = None) -> None:
    """List keys (never their secrets)."""
    rows = list_keys(ledger(settings(config)))
    items = [
        {
            "id": r.id,
            "prefix": r.prefix,
            "name": r.name,
            "team": r.team,
            "project": r.project,
            "models": [m for m in r.models.split(",") if m],
            "created_at": r.created_at.isoformat(),
            "revoked": r.revoked_at is not None,
        }
        for r in rows
    ]
    if as_json:
        typer.echo(json.dumps(items))
        return
    typer.echo(f"{'ID':<18} {'PREFIX':<12} {'TEAM':<16} {'NAME':<20} STATUS")
    for i in items:
        typer.echo(f"{i['id']:<18} {i['prefix']:<12} {i['team']:<16} {i['name']:<20} {'revoked' if i['revoked'] else 'active'}")


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="key id from `keys list`")], config: ConfigOption = None) -> None:
    """Revoke a key; every proxy refuses it within seconds."""
    try:
        revoke_key(ledger(settings(config)), key_id)
    except CostingError as e:
        fail(str(e))
    typer.echo(f"revoked {key_id}")
