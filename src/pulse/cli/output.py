"""Where tables go: on a terminal, at its width; to a pipe, a file or a log, whole (rich would cut them at 80
columns, leaving headers such as "fresh…")."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click
import orjson
from rich.console import Console

UNBOUNDED = 1_000
"""Columns given to a table that is not printed on a terminal: more than any table needs, so none is cut."""


def table_console(stderr: bool = False) -> Console:
    console = Console(stderr=stderr)
    return console if console.is_terminal else Console(stderr=stderr, width=UNBOUNDED)


def json_option(command: Callable[..., None]) -> Callable[..., None]:
    """``--json``: the command's results as one JSON object on stdout, for programs, instead of its tables."""
    return click.option("--json", "as_json", is_flag=True,
                        help="Print the results as one JSON object (for programs) instead of tables.")(command)


def emit(as_json: bool, result: dict[str, Any], people: Callable[[], None]) -> None:
    """``result`` as JSON (dataclasses serialize field by field), or ``people``'s tables and verdict lines."""
    if as_json:
        click.echo(orjson.dumps(result, option=orjson.OPT_NON_STR_KEYS).decode())
    else:
        people()
