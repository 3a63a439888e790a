"""`pulse dashboard`: serve the built-in live page and its JSON API on 127.0.0.1."""

from __future__ import annotations

import click

from pulse.cli.durations import Duration
from pulse.config import Settings
from pulse.connect.elasticsearch import problem
from pulse.errors import PulseError
from pulse.observe.server import every, metrics_addr_option, serve


@click.command()
@click.option("--host", envvar="PULSE_DASHBOARD_HOST", default="127.0.0.1", show_default=True,
              help="Interface to bind (keep 127.0.0.1 unless you mean to expose it).")
@click.option("--port", envvar="PULSE_DASHBOARD_PORT", type=click.IntRange(1, 65535), default=8050,
              show_default=True)
@click.option("--index-prefix", envvar="PULSE_INDEX_PREFIX", default="pulse", show_default=True)
@click.option("--push-interval", type=Duration(0.2, 60), default="1s", show_default=True,
              help="Time between live updates pushed to each open page [env PULSE_DASHBOARD_PUSH_INTERVAL].",
              envvar="PULSE_DASHBOARD_PUSH_INTERVAL")
@click.option("--allowed-hosts", envvar="PULSE_DASHBOARD_ALLOWED_HOSTS", default=None, metavar="NAMES",
              help="Host names the dashboard answers besides 127.0.0.1, localhost and --host, comma-separated "
                   "(the name people type behind a proxy; * for any): other Host headers get 400, which keeps "
                   "web pages elsewhere from reaching it through DNS rebinding [env PULSE_DASHBOARD_ALLOWED_HOSTS].")
@click.option("--max-streams", envvar="PULSE_DASHBOARD_MAX_STREAMS", type=click.IntRange(1), default=100,
              show_default=True, help="Live streams (open pages) served at once; more get 503 "
                                      "[env PULSE_DASHBOARD_MAX_STREAMS].")
@metrics_addr_option
@click.pass_obj
def dashboard(settings: Settings, host: str, port: int, index_prefix: str, push_interval: float,
              allowed_hosts: str | None, max_streams: int, metrics_addr: str | None) -> None:
    """Serve the live dashboard (KPIs, charts, top items, funnel, drill-down) and its OpenAPI-documented JSON API."""
    import uvicorn

    from pulse.dashboard.app import DashboardConfig, create_app
    from pulse.stack.process import port_in_use

    if port_in_use(port, host):
        raise PulseError(f"port {port} on {host} is already in use (pass --port or set PULSE_DASHBOARD_PORT)")
    serve(metrics_addr, every(2.0, lambda: problem(settings.es)))
    from pulse.dashboard.guard import allowed_hosts as hosts

    app = create_app(DashboardConfig(es=settings.es, index_prefix=index_prefix, push_interval_s=push_interval,
                                     allowed_hosts=tuple(hosts(host, allowed_hosts)), max_streams=max_streams))
    click.echo(f"dashboard: http://{host}:{port}/  (API docs: http://{host}:{port}/docs; Ctrl-C stops)", err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=2)
