"""The `pulse` command: a thin edge over the pipeline's modules. Operator errors print one line."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import click

from pulse.config import Settings
from pulse.connect.kafka import use_config_file
from pulse.errors import PulseError
from pulse.observe.logs import FORMATS, LEVELS, configure

# verb -> "module:attribute" under pulse.cli; imported only when used, so `pulse aggregate` does not pay for
# Elasticsearch, FastAPI and the rest at start-up (about a second)
VERBS = {
    "stack": "stack_cmd:stack", "setup": "generate_cmd:setup", "generate": "generate_cmd:generate",
    "events": "generate_cmd:events", "run": "run_cmd:run", "aggregate": "aggregate_cmd:aggregate",
    "store": "store_cmd:store", "verify": "verify_cmd:verify", "archive": "store_cmd:archive",
    "replay": "store_cmd:replay", "bench": "bench_cmd:bench", "dashboard": "dashboard_cmd:dashboard",
    "kibana": "kibana_cmd:kibana", "chaos": "chaos_cmd:chaos", "config": "config_cmd:config",
    "collect": "collect_cmd:collect",
}


class PulseGroup(click.Group):
    """Turns PulseError into a one-line message and Ctrl-C into exit code 130, never a traceback. Verbs load
    lazily from :data:`VERBS`."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(VERBS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in VERBS:
            return None
        module, attr = VERBS[cmd_name].split(":")
        command: click.Command = getattr(importlib.import_module(f"pulse.cli.{module}"), attr)
        show_envvars(command, ctx)
        return command

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except PulseError as exc:
            click.secho(f"pulse: error: {exc}", fg="red", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("pulse: interrupted", err=True)
            sys.exit(130)
        except OSError as exc:  # files and sockets: the operator can act on the one line
            detail = exc.strerror or str(exc) or type(exc).__name__  # a bare TimeoutError has no message
            click.secho(f"pulse: error: {detail}: {exc.filename or ''}".rstrip(": "), fg="red", err=True)
            sys.exit(1)
        except Exception as exc:
            # Elasticsearch's refusals that outlast a command's patience (matched by module, so that commands
            # which never talk to it do not pay for importing its client)
            if not type(exc).__module__.startswith(("elasticsearch", "elastic_transport")):
                raise
            detail = " ".join(str(exc).split())[:400]
            click.secho(f"pulse: error: Elasticsearch: {detail}", fg="red", err=True)
            sys.exit(3)  # a service failed, as with Kafka (`BrokerUnavailable`): not what `pulse verify`'s 1 says


def show_envvars(command: click.Command, ctx: click.Context) -> None:
    """Every option's ``--help`` names its variable: its own ``PULSE_*`` name, or the automatic
    ``PULSE_<COMMAND>_<OPTION>`` one (unless its help text names it already)."""
    for param in command.params:
        if isinstance(param, click.Option) and not param.hidden and param.name not in {"help", "version"}:
            names = [param.envvar] if isinstance(param.envvar, str) else list(param.envvar or [])
            param.show_envvar = not any(name in (param.help or "") for name in names) or not names
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None:
                show_envvars(sub, ctx)


ENV_PREFIX = "PULSE"
"""Options without a variable of their own read ``PULSE_<COMMAND>_<OPTION>`` (click's automatic names)."""


@click.group(cls=PulseGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100,
                                               "auto_envvar_prefix": ENV_PREFIX})
@click.option("--home", type=click.Path(path_type=Path), envvar="PULSE_HOME", default=None,
              help="Directory for downloads, data and logs [env PULSE_HOME; default .pulse/ in the repo].")
@click.option("--kafka-config", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="librdkafka properties for every Kafka client (security.protocol, sasl.*, ssl.*, …) in the "
                   "client.properties format of kcat -F [env PULSE_KAFKA_CONFIG; single properties also as "
                   "PULSE_KAFKA_<PROPERTY>, e.g. PULSE_KAFKA_SECURITY_PROTOCOL, secrets as …_FILE].")
@click.option("--log-level", type=click.Choice(LEVELS), envvar="PULSE_LOG_LEVEL", default="info", show_default=True,
              help="How much Pulse logs [env PULSE_LOG_LEVEL].")
@click.option("--log-format", type=click.Choice(FORMATS), envvar="PULSE_LOG_FORMAT", default="text",
              show_default=True, help="Log lines as text, or as JSON objects for log shippers [env PULSE_LOG_FORMAT].")
@click.version_option(package_name="pulse")
@click.pass_context
def cli(ctx: click.Context, home: Path | None, kafka_config: Path | None, log_level: str, log_format: str) -> None:
    """Pulse: real-time interaction analytics.

    Events flow generator -> Kafka -> exactly-once windowed aggregator -> Elasticsearch -> dashboards.
    Every option can also be set by a PULSE_* environment variable.
    """
    if kafka_config is not None:
        use_config_file(kafka_config)
    ctx.obj = Settings.from_env(home=home)
    configure(log_level, log_format)


def main() -> None:
    cli(prog_name="pulse")
