"""One spelling for durations: 500ms, 1.5s, 5m, 1h, 1d; a bare number is seconds."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from pulse.cli.durations import Duration, parse_seconds, spell


@pytest.mark.parametrize(("text", "seconds"), [("500ms", 0.5), ("1.5s", 1.5), ("5m", 300), ("1h", 3600),
                                                ("1d", 86400), ("30", 30), ("0.25", 0.25), (" 2 s ", 2)])
def test_spellings(text: str, seconds: float) -> None:
    assert parse_seconds(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "5 minutes", "-1s", "1e3", "5x"])
def test_what_is_not_a_duration_says_how_to_write_one(text: str) -> None:
    with pytest.raises(ValueError, match="500ms, 30s, 5m, 1h"):
        parse_seconds(text)


@given(st.integers(1, 10**9))
def test_spell_reads_back(ms: int) -> None:
    assert parse_seconds(spell(ms / 1000)) == pytest.approx(ms / 1000)


def test_an_option_converts_bounds_and_reports_one_line() -> None:
    @click.command()
    @click.option("--every", type=Duration(0.05, 60), default="1s")
    @click.option("--grace", type=Duration(0, ms=True), default="30s")
    def show(every: float, grace: int) -> None:
        click.echo(f"{every} {grace}")

    runner = CliRunner()
    assert runner.invoke(show, []).output == "1.0 30000\n"
    assert runner.invoke(show, ["--every", "250ms", "--grace", "2m"]).output == "0.25 120000\n"
    out = runner.invoke(show, ["--every", "2m"]).output
    assert "must be between 50ms and 1m" in out
    assert "is not a duration" in runner.invoke(show, ["--grace", "soon"]).output
