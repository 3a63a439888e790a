"""`pulse dashboard`: serve the built-in live page and its JSON API on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

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
@click.option("--tokens", envvar="PULSE_DASHBOARD_TOKENS", default=None, metavar="TOKEN,...",
              help="Read tokens: with any, every page and API call but /api/health needs one (open the page once "
                   "with ?token=...; it is kept in a cookie); required to bind anything but loopback "
                   "[env PULSE_DASHBOARD_TOKENS].")
@click.option("--tokens-file", envvar="PULSE_DASHBOARD_TOKENS_FILE", type=click.Path(path_type=Path), default=None,
              help="A file of read tokens, one a line [env PULSE_DASHBOARD_TOKENS_FILE].")
@click.option("--collectors", envvar="PULSE_DASHBOARD_COLLECTORS", default=None, metavar="URL,...",
              help="`pulse collect` base URLs (e.g. http://127.0.0.1:8060) whose counts the page shows: accepted, "
                   "duplicate, rejected, retry and refused requests [env PULSE_DASHBOARD_COLLECTORS; default: none].")
@metrics_addr_option
@click.pass_obj
def dashboard(settings: Settings, host: str, port: int, index_prefix: str, push_interval: float,
              allowed_hosts: str | None, max_streams: int, tokens: str | None, tokens_file: Path | None,
              collectors: str | None, metrics_addr: str | None) -> None:
    """Serve the live dashboard (KPIs, charts, top items, funnel, drill-down) and its OpenAPI-documented JSON API."""
    import uvicorn

    from pulse.dashboard.app import DashboardConfig, create_app
    from pulse.dashboard.guard import LOCAL_HOSTS, read_tokens
    from pulse.stack.process import port_in_use

    readers = read_tokens(tokens, tokens_file)
    if not readers and host not in LOCAL_HOSTS:
        raise PulseError(f"refusing to serve {host} without read tokens: pass --tokens or --tokens-file "
                         "(PULSE_DASHBOARD_TOKENS, PULSE_DASHBOARD_TOKENS_FILE), or bind 127.0.0.1")
    if port_in_use(port, host):
        raise PulseError(f"port {port} on {host} is already in use (pass --port or set PULSE_DASHBOARD_PORT)")
    serve(metrics_addr, every(2.0, lambda: problem(settings.es)))
    from pulse.dashboard.guard import allowed_hosts as hosts

    app = create_app(DashboardConfig(es=settings.es, index_prefix=index_prefix, push_interval_s=push_interval,
                                     allowed_hosts=tuple(hosts(host, allowed_hosts)), max_streams=max_streams,
                                     read_tokens=readers,
                                     collectors=tuple(u.strip() for u in (collectors or "").split(",") if u.strip())))
    click.echo(f"dashboard: http://{host}:{port}/  (API docs: http://{host}:{port}/docs; Ctrl-C stops)", err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=2)
