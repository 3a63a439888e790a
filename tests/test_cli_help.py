"""Every command explains itself with the stack down: `--help` must never need Kafka or Elasticsearch."""

from __future__ import annotations

import socket

import click
import pytest
from click.testing import CliRunner

from pulse.cli.main import cli


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
    dead = str(_free_port())  # nothing listens here
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
