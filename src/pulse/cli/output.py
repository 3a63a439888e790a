"""Where tables go: on a terminal, at its width; to a pipe, a file or a log, whole (rich would cut them at 80
columns, leaving headers such as "fresh…")."""

from __future__ import annotations

from rich.console import Console

UNBOUNDED = 1_000
"""Columns given to a table that is not printed on a terminal: more than any table needs, so none is cut."""


def table_console(stderr: bool = False) -> Console:
    console = Console(stderr=stderr)
    return console if console.is_terminal else Console(stderr=stderr, width=UNBOUNDED)
