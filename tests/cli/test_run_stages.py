"""`pulse run`'s stages: the archive and the following verify are optional, and every stage gets its own metrics
port."""

from __future__ import annotations

from pathlib import Path

from pulse.cli.run_cmd import STAGES, metrics_ports, pipeline_stages
from pulse.config import Settings


def test_the_archive_stage_can_be_left_out_and_ports_stay_distinct(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    ports = metrics_ports(39464, {38050, 39465})
    assert len(set(ports.values())) == len(STAGES) and not {38050, 39465} & set(ports.values())
    every = pipeline_stages(settings, 10.0, 38050, ports, verify=True, collect_port=38060)
    default = pipeline_stages(settings, 10.0, 38050, ports, collect_port=38060)
    without = pipeline_stages(settings, 10.0, 38050, ports, archive=False)
    assert [s.name for s in every] == list(STAGES)
    assert [s.name for s in default] == [n for n in STAGES if n != "verify"]
    assert [s.name for s in without] == [n for n in STAGES if n not in ("archive", "verify", "collect")]
    assert next(s for s in every if s.name == "collect").argv()[3:6] == ["collect", "--port", "38060"]
    assert next(s for s in every if s.name == "verify").argv()[3:5] == ["verify", "--follow"]
