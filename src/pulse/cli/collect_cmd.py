"""`pulse collect`: the HTTP front door for web and mobile apps (see :mod:`pulse.collect.app`)."""

from __future__ import annotations

from pathlib import Path

import click

from pulse.cli.durations import Duration
from pulse.config import Settings
from pulse.errors import PulseError
from pulse.observe.server import metrics_addr_option, serve

LOOPBACK = ("127.0.0.1", "localhost", "::1")


@click.command()
@click.option("--topic", envvar="PULSE_TOPIC", default="pulse.events", show_default=True,
              help="Input topic the events go to [env PULSE_TOPIC].")
@click.option("--host", envvar="PULSE_COLLECT_HOST", default="127.0.0.1", show_default=True,
              help="Interface to bind; any other than loopback needs write keys [env PULSE_COLLECT_HOST].")
@click.option("--port", envvar="PULSE_COLLECT_PORT", type=click.IntRange(1, 65535), default=8060, show_default=True,
              help="[env PULSE_COLLECT_PORT]")
@click.option("--keys", envvar="PULSE_COLLECT_KEYS", default=None, metavar="KEY=ORIGIN,...;...",
              help="Write keys, each with the web origins allowed to use it (* any; none: servers only) "
                   "[env PULSE_COLLECT_KEYS; default: none, no key asked for, loopback only].")
@click.option("--keys-file", envvar="PULSE_COLLECT_KEYS_FILE", type=click.Path(path_type=Path), default=None,
              help="A file of write keys, one KEY=ORIGIN,... per line [env PULSE_COLLECT_KEYS_FILE].")
@click.option("--max-events", envvar="PULSE_COLLECT_MAX_EVENTS", type=click.IntRange(1, 100_000), default=1000,
              show_default=True, help="Events per batch; more get 413 [env PULSE_COLLECT_MAX_EVENTS].")
@click.option("--max-body", envvar="PULSE_COLLECT_MAX_BODY", type=click.IntRange(1024), default=1024 * 1024,
              show_default=True, help="Bytes per request as sent; more get 413 [env PULSE_COLLECT_MAX_BODY].")
@click.option("--rate-limit", envvar="PULSE_COLLECT_RATE_LIMIT", type=click.FloatRange(0), default=10_000,
              show_default=True, help="Events per second per write key (a second's worth may come at once); more "
                                      "get 429 with Retry-After; 0: no limit [env PULSE_COLLECT_RATE_LIMIT].")
@click.option("--delivery-wait", envvar="PULSE_COLLECT_DELIVERY_WAIT", type=Duration(0.1, 60), default="5s",
              show_default=True, help="How long an answer waits for Kafka's acknowledgements; events not acknowledged "
                                      "by then are answered `retry` [env PULSE_COLLECT_DELIVERY_WAIT].")
@metrics_addr_option
@click.pass_obj
def collect(settings: Settings, topic: str, host: str, port: int, keys: str | None, keys_file: Path | None,
            max_events: int, max_body: int, rate_limit: float, delivery_wait: float, metrics_addr: str | None) -> None:
    """Take events over HTTP (POST /v1/batch, /v1/event) and answer each once Kafka has it: accepted with its
    partition and offset, duplicate, rejected with the contract's reason (also dead-lettered), or retry."""
    import uvicorn

    from pulse.collect import keys as write_keys
    from pulse.collect.app import CollectConfig, create_app
    from pulse.collect.intake import Limits
    from pulse.collect.quota import Quota
    from pulse.collect.sender import Sender
    from pulse.stack.process import port_in_use

    found = write_keys.load(keys, keys_file)
    if not found.required and host not in LOOPBACK:
        raise PulseError(f"refusing to serve {host} without write keys: pass --keys or --keys-file "
                         "(PULSE_COLLECT_KEYS, PULSE_COLLECT_KEYS_FILE), or bind 127.0.0.1")
    if port_in_use(port, host):
        raise PulseError(f"port {port} on {host} is already in use (pass --port or set PULSE_COLLECT_PORT)")
    sender = Sender(settings.bootstrap, topic)
    serve(metrics_addr, lambda: None if sender.ready else "Kafka is unreachable")
    limits = Limits(body_bytes=max_body, events=max_events, inflated_bytes=max(4 * max_body, Limits().inflated_bytes))
    app = create_app(CollectConfig(found, limits, delivery_wait, Quota(rate_limit)), sender)
    click.echo(f"collect: http://{host}:{port}/v1/batch -> {topic} ({len(found.keys)} write key(s); Ctrl-C stops)",
               err=True)
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=2)
    finally:
        left = sender.close()
        if left:
            click.echo(f"collect: {left} record(s) still undelivered at exit (their clients were answered retry)",
                       err=True)
