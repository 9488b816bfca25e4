"""`meterline demo`: a simulated provider and MCP server, the real proxy, a month of traffic,
then the dashboard. `run.run_demo` does the work; `cli.demo` is the command."""
