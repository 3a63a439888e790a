"""Every command explains itself with the stack down: `--help` must never need Kafka or Elasticsearch."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from pulse.cli.main import cli
from pulse.stack.private import free_port


def _command_paths(group: click.Group, ctx: click.Context, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = []
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, name
        paths.append((*prefix, name))
        if isinstance(command, click.Group):
            paths.extend(_command_paths(command, ctx, (*prefix, name)))
    return paths


def test_every_command_has_help_with_the_stack_down(monkeypatch: pytest.MonkeyPatch) -> None:
    dead = str(free_port())  # nothing listens here
    monkeypatch.setenv("PULSE_KAFKA_PORT", dead)
    monkeypatch.setenv("PULSE_ES_PORT", dead)
    monkeypatch.delenv("PULSE_BOOTSTRAP", raising=False)
    monkeypatch.delenv("PULSE_ES_URL", raising=False)
    paths = _command_paths(cli, click.Context(cli))
    assert ("bench", "aggregate") in paths and ("aggregate",) in paths
    runner = CliRunner()
    for path in paths:
        result = runner.invoke(cli, [*path, "--help"], prog_name="pulse")
        assert result.exit_code == 0, (path, result.output, result.exception)
        assert f"Usage: pulse {' '.join(path)}" in result.output, (path, result.output)


def test_every_option_names_its_pulse_variable_in_help() -> None:
    """Every option can be set by a PULSE_* variable, and --help says which (its own name or the automatic
    PULSE_<COMMAND>_<OPTION> one)."""
    root = click.Context(cli, info_name="pulse", auto_envvar_prefix="PULSE")
    checked = 0
    for path in _command_paths(cli, root):
        ctx, command = root, cli
        for name in path:
            command = command.get_command(ctx, name)  # type: ignore[attr-defined]
            ctx = click.Context(command, parent=ctx, info_name=name)
        for param in command.params:
            if isinstance(param, click.Option) and param.name not in {"help", "version"}:
                record = param.get_help_record(ctx)
                assert record is not None and "PULSE_" in record[1], (path, param.opts, record)
                checked += 1
    assert checked > 100


def test_an_option_without_a_variable_of_its_own_reads_the_automatic_one() -> None:
    result = CliRunner().invoke(cli, ["aggregate", "--exit-when-idle", "1", "--help"], prog_name="pulse",
                                env={"PULSE_AGGREGATE_MAX_SECONDS": "not-a-number"})
    assert result.exit_code == 0  # --help is eager: nothing else is parsed
    result = CliRunner().invoke(cli, ["aggregate"], prog_name="pulse",
                                env={"PULSE_AGGREGATE_MAX_SECONDS": "not-a-number"})
    assert result.exit_code == 2 and "--max-seconds" in result.output
