"""`meterline report`: readable reports for a terminal, or JSON."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from meterline.costing import Org

from .common import ConfigOption, MonthOption, fail, ledger, month, settings
from .finance import report_chargeback

report_app = typer.Typer(no_args_is_help=True, help="Readable reports.")
report_app.command("chargeback")(report_chargeback)


@report_app.command("showback")
def report_showback(
    month_: MonthOption, as_json: Annotated[bool, typer.Option("--json")] = False, config: ConfigOption = None
) -> None:
    """Cost by department and team."""
    from meterline.reports import showback
    from meterline.reports.tables import showback_table

    s = settings(config)
    sb = showback(ledger(s), Org(s), month(month_))
    typer.echo(json.dumps(sb.as_dict(), indent=2) if as_json else showback_table(sb))


@report_app.command("tools")
def report_tools(
    month_: MonthOption, as_json: Annotated[bool, typer.Option("--json")] = False, config: ConfigOption = None
) -> None:
    """MCP tools: calls, own cost, the cost of their sub-calls (LLM and tool calls), total."""
    from meterline.reports.agents import tool_costs, tools_table

    rows = tool_costs(ledger(settings(config)), month(month_))
    typer.echo(json.dumps([r.as_dict() for r in rows], indent=2) if as_json else tools_table(month_, rows))


@report_app.command("runs")
def report_runs(
    month_: MonthOption,
    top: Annotated[int, typer.Option("--top", min=1, help="how many runs")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON, with each run's call tree")] = False,
    config: ConfigOption = None,
) -> None:
    """Agent runs (traces of several calls) by cost: payer, depth, fan-out, duration, cost by
    model, tool and team charged, how the calls were linked."""
    from meterline.reports.agents import runs_table, top_runs

    runs = top_runs(ledger(settings(config)), month(month_), top)
    typer.echo(json.dumps([r.as_dict() for r in runs], indent=2) if as_json else runs_table(month_, runs))


@report_app.command("call")
def report_call(
    call_id: Annotated[str, typer.Argument(help="a call id (X-Meterline-Call-Id, or from an export)")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
    config: ConfigOption = None,
) -> None:
    """One call with everything made on its behalf, and what each part cost; then its run."""
    from meterline.reports.agents import call_tree, run_detail, run_text, tree_text

    engine = ledger(settings(config))
    node = call_tree(engine, call_id)
    if node is None:
        fail(f"no call {call_id!r} in the ledger (recent calls reach it within a flush interval)")
    run = run_detail(engine, node.trace_id)
    run = run if run is not None and run.calls > 1 else None  # one call is not a run
    if as_json:
        typer.echo(json.dumps({**node.as_dict(), "run": run.as_dict(tree=False) if run else None}, indent=2))
    else:
        typer.echo(tree_text(node) + (f"\n\n{run_text(run)}" if run else ""))


@report_app.command("anomalies")
def report_anomalies(
    month_: MonthOption, as_json: Annotated[bool, typer.Option("--json")] = False, config: ConfigOption = None
) -> None:
    """Spend anomalies: hours a team's or key's spend spiked against its own recent hours."""
    from meterline.reports.guards import anomalies_table, month_anomalies, spike_row

    s = settings(config)
    spikes = month_anomalies(ledger(s), s.alerts, month(month_))
    typer.echo(json.dumps([spike_row(x) for x in spikes], indent=2) if as_json else anomalies_table(month_, spikes))
