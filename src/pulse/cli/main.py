"""The `pulse` command: a thin edge over the pipeline's modules. Operator errors print one line."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from pulse.config import Settings
from pulse.errors import PulseError


class PulseGroup(click.Group):
    """Turns PulseError into a one-line message and Ctrl-C into exit code 130, never a traceback."""

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
            click.secho(f"pulse: error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), fg="red",
                        err=True)
            sys.exit(1)


@click.group(cls=PulseGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--home", type=click.Path(path_type=Path), envvar="PULSE_HOME", default=None,
              help="Directory for downloads, data and logs [env PULSE_HOME; default .pulse/ in the repo].")
@click.version_option(package_name="pulse")
@click.pass_context
def cli(ctx: click.Context, home: Path | None) -> None:
    """Pulse: real-time interaction analytics.

    Events flow generator -> Kafka -> exactly-once windowed aggregator -> Elasticsearch -> dashboards.
    Every option can also be set by a PULSE_* environment variable.
    """
    ctx.obj = Settings.from_env(home=home)


def main() -> None:
    cli(prog_name="pulse")


def _register() -> None:
    """Attach the verbs; each lives in its own module so `pulse --help` stays cheap to import."""
    from pulse.cli import stack_cmd

    cli.add_command(stack_cmd.stack)
    from pulse.cli import generate_cmd

    for command in generate_cmd.COMMANDS:
        cli.add_command(command)
    from pulse.cli import bench_cmd, run_cmd

    cli.add_command(run_cmd.run)
    from pulse.cli import aggregate_cmd

    cli.add_command(aggregate_cmd.aggregate)
    from pulse.cli import store_cmd

    cli.add_command(store_cmd.store)
    cli.add_command(store_cmd.verify)
    cli.add_command(store_cmd.archive)
    cli.add_command(store_cmd.replay)

    cli.add_command(bench_cmd.bench)
    from pulse.cli import dashboard_cmd

    cli.add_command(dashboard_cmd.dashboard)
    from pulse.cli import kibana_cmd

    cli.add_command(kibana_cmd.kibana)


_register()
