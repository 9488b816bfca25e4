"""The `meterline` command: joins the proxy, the reports and the dashboard."""
