"""`pulse config`: the effective settings of this shell and where each came from, secrets redacted."""

from __future__ import annotations

import os
from dataclasses import dataclass

import click
from rich.table import Table

from pulse.cli.output import table_console
from pulse.config import Settings
from pulse.connect.kafka import PREFIX, PULSE_DECIDES, client_config, for_client, is_secret, property_sources

SECRET_VARIABLES = ("PASSWORD", "API_KEY", "SECRET", "TOKEN")
ES_VARIABLES = ("PULSE_ES_URL", "PULSE_ES_CLOUD_ID", "PULSE_ES_USERNAME", "PULSE_ES_PASSWORD", "PULSE_ES_API_KEY",
                "PULSE_ES_CA_CERT", "PULSE_ES_VERIFY_CERTS")


@dataclass(frozen=True)
class Row:
    name: str
    value: str
    source: str


def _options(ctx: click.Context) -> dict[str, tuple[object, set[str]]]:
    """Every variable the commands' options read → (its default, the commands that read it)."""
    found: dict[str, tuple[object, set[str]]] = {}

    def walk(command: click.Command, cctx: click.Context, path: str) -> None:
        for param in command.params:
            if not isinstance(param, click.Option) or param.name in {"help", "version"}:
                continue
            names = [param.envvar] if isinstance(param.envvar, str) else list(param.envvar or [])
            if not names and cctx.auto_envvar_prefix and param.name:
                names = [f"{cctx.auto_envvar_prefix}_{param.name.upper()}"]
            for name in names:
                found.setdefault(name, (param.default, set()))[1].add(path or "pulse")
        if isinstance(command, click.Group):
            for name in command.list_commands(cctx):
                sub = command.get_command(cctx, name)
                if sub is not None:
                    walk(sub, click.Context(sub, parent=cctx, info_name=name), f"{path} {name}".strip())

    root = ctx.find_root()
    walk(root.command, click.Context(root.command, info_name="pulse", auto_envvar_prefix="PULSE"), "")
    return found


def _shown(name: str, value: str) -> str:
    return "***" if any(word in name for word in SECRET_VARIABLES) else value


def rows(ctx: click.Context, settings: Settings, everything: bool) -> tuple[list[Row], list[Row], list[Row]]:
    """(Kafka connection, Elasticsearch connection, settings) rows."""
    env = os.environ
    kafka = [Row("bootstrap.servers", settings.bootstrap,
                 "env PULSE_BOOTSTRAP" if env.get("PULSE_BOOTSTRAP") else "default (the local stack)")]
    for prop, (value, source) in sorted(property_sources(env).items()):
        if prop == "bootstrap.servers" and env.get("PULSE_BOOTSTRAP"):
            continue
        kafka.append(Row(prop, "***" if is_secret(prop) else value.reveal(), source))
    es = settings.es
    es_rows = [Row("hosts" if es.hosts else "cloud id", es.display,
                   "env PULSE_ES_URL" if env.get("PULSE_ES_URL") else
                   "env PULSE_ES_CLOUD_ID" if es.cloud_id else "default (the local stack)")]
    for name in ES_VARIABLES[2:]:
        for variable in (name, f"{name}_FILE"):
            if env.get(variable):
                source = f"env {variable}={env[variable]}" if variable.endswith("_FILE") else f"env {variable}"
                es_rows.append(Row(name.removeprefix("PULSE_ES_").lower(), _shown(name, env[variable]), source))
    in_url = "env PULSE_ES_URL (written into the URL)"
    if es.username is not None and not env.get("PULSE_ES_USERNAME"):
        es_rows.append(Row("username", es.username, in_url))
    if es.password is not None and not any(env.get(v) for v in ("PULSE_ES_PASSWORD", "PULSE_ES_PASSWORD_FILE")):
        es_rows.append(Row("password", "***", in_url))
    handled = {"PULSE_BOOTSTRAP", *ES_VARIABLES, *(f"{v}_FILE" for v in ES_VARIABLES)}
    options = _options(ctx)
    for name in (f"PULSE_{f.upper()}" for f in Settings.__dataclass_fields__):
        options.setdefault(name, (getattr(Settings(), name[6:].lower()), {"pulse stack"}))
    settings_rows = []
    for name, (default, commands) in sorted(options.items()):
        if name in handled or (name.startswith(PREFIX) and name.removeprefix(PREFIX) not in
                               {"CONFIG", "PORT", "CONTROLLER_PORT", "HEAP", "VERSION", "TOOLS_VERSION"}):
            continue
        used = ", ".join(sorted(commands))
        if env.get(name):
            settings_rows.append(Row(name, _shown(name, env[name]), f"env · {used}"))
        elif everything:
            settings_rows.append(Row(name, "" if default is None else str(default), f"default · {used}"))
    return kafka, es_rows, settings_rows


def clients(settings: Settings) -> dict[str, dict[str, object]]:
    """Each Kafka client Pulse makes, by the name scoped properties use for it, with Pulse's own settings."""
    from pulse.aggregate.engine import EngineConfig
    from pulse.aggregate.group import INPUT_CLIENT, input_settings
    from pulse.aggregate.repartition import FORWARDED_CLIENT, forwarded_settings
    from pulse.aggregate.transactions import PRODUCER_CLIENT, producer_settings
    from pulse.collect import sender
    from pulse.generate.producer import producer_settings as input_producer
    from pulse.kafkaio import QUIET_LOG, lag_settings, reader_settings
    from pulse.store.archive import ArchiveConfig
    from pulse.store.bulk import dead_letter_settings
    from pulse.store.projection import projection_settings
    from pulse.topics import store_group

    group = os.environ.get("PULSE_GROUP", "pulse-aggregator")
    return {
        "generate.producer": input_producer(),
        sender.CLIENT: input_producer(**sender.tuning()),
        INPUT_CLIENT: input_settings(settings.bootstrap, group),
        PRODUCER_CLIENT: producer_settings(f"{group}-<instance>", EngineConfig.transaction_timeout_ms),
        FORWARDED_CLIENT: forwarded_settings(),
        "restore.consumer": reader_settings(),
        "store.consumer": projection_settings(store_group(group)),
        "store.producer": dead_letter_settings(),
        "archive.consumer": projection_settings(ArchiveConfig.group),
        "archive.producer": dead_letter_settings(),
        "lag.consumer": lag_settings(group),
        "admin": {"logger": QUIET_LOG},
    }


def client_rows(settings: Settings, name: str, own: dict[str, object]) -> list[Row]:
    """What ``name`` runs with: each property, its value, and whose it is."""
    operator = for_client({p: src for p, (_, src) in property_sources(os.environ).items()}, name)
    effective = client_config(settings.bootstrap, own, client=name)
    out = []
    for prop, value in sorted(effective.items()):
        if not isinstance(value, str | int | float):  # callbacks and the logger
            continue
        source = (("env PULSE_BOOTSTRAP" if os.environ.get("PULSE_BOOTSTRAP") else "default (the local stack)")
                  if prop == "bootstrap.servers"
                  else "Pulse: exactly-once or no loss rests on it" if prop in own and prop in PULSE_DECIDES
                  else operator.get(prop, "Pulse"))
        out.append(Row(prop, "***" if is_secret(prop) else str(value), source))
    return out


@click.command("config")
@click.option("--all", "everything", is_flag=True, help="Also list the settings left at their defaults.")
@click.option("--clients", "show_clients", is_flag=True,
              help="Show what each Kafka client Pulse makes runs with: Pulse's settings and the operator's "
                   "(PULSE_KAFKA_*, --kafka-config; a property prefixed consumer., producer. or a client's name, "
                   "such as aggregate.consumer., applies to those clients only).")
@click.pass_context
def config(ctx: click.Context, everything: bool, show_clients: bool) -> None:
    """Print the effective settings of this shell and where each came from (flag, variable, file or default);
    secrets show as ***. Nothing is contacted."""
    settings: Settings = ctx.obj
    if show_clients:
        for name, own in clients(settings).items():
            table = Table("property", "value", "source", title=f"Kafka client {name}", title_justify="left")
            for row in client_rows(settings, name, own):
                table.add_row(row.name, row.value, row.source)
            table_console().print(table)
        return
    kafka, es, other = rows(ctx, settings, everything)
    console = table_console()
    for title, table_rows in (("Kafka connection", kafka), ("Elasticsearch connection", es),
                              ("Settings" + ("" if everything else " (set; --all lists every one)"), other)):
        table = Table("name", "value", "source", title=title, title_justify="left")
        for row in table_rows:
            table.add_row(row.name, row.value, row.source)
        console.print(table)
