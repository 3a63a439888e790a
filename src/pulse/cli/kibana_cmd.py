"""`pulse kibana export|import`: Pulse's Kibana data views, Lens visualisations and dashboard."""

from __future__ import annotations

from pathlib import Path

import click


@click.group()
def kibana() -> None:
    """Kibana dashboards as code (Kibana 8.11+ and 9.x)."""


@kibana.command("export")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the NDJSON here instead of standard output.")
def export(output: Path | None) -> None:
    """Print the saved objects as NDJSON (Kibana's import format)."""
    from pulse.kibana.saved_objects import ndjson

    text = ndjson()
    if output is None:
        click.echo(text, nl=False)
    else:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text)
        click.echo(f"wrote {len(text.splitlines())} saved objects to {output}", err=True)


@kibana.command("import")
@click.option("--url", envvar="PULSE_KIBANA_URL", default="http://127.0.0.1:5601", show_default=True,
              help="Kibana's base URL.")
@click.option("--space", envvar="PULSE_KIBANA_SPACE", default=None, help="Kibana space [default space].")
@click.option("--user", envvar="PULSE_KIBANA_USER", default=None,
              help="Basic-auth user; the password comes from PULSE_KIBANA_PASSWORD or, better, a file named by "
                   "PULSE_KIBANA_PASSWORD_FILE (never a flag: command lines are visible to every local user).")
def import_(url: str, space: str | None, user: str | None) -> None:
    """Import (overwrite) Pulse's data views, visualisations and dashboard; fails unless Kibana reports success."""
    import os

    from pulse.connect.secrets import read_secret
    from pulse.kibana.importer import import_objects

    password = read_secret(os.environ, "PULSE_KIBANA_PASSWORD")
    result = import_objects(url, space, (user, password.reveal() if password else "") if user else None)
    click.echo(f"kibana: imported {result.count} saved objects into {url}; open the dashboard "
               f"{url.rstrip('/')}/app/dashboards#/view/pulse-overview")
