"""`pulse bench failover` on the real stack at a small size: aggregator a is SIGKILLed, b takes over its
partitions, and each one's dark time and restore are measured, bounded below by what the group must wait."""

from __future__ import annotations

from pathlib import Path

from pulse.aggregate.group import input_settings
from pulse.bench import failover
from pulse.bench.scratch import scratch
from pulse.config import Settings


def test_each_partition_of_the_killed_instance_goes_dark_until_the_other_restores_and_flushes_it(
        settings: Settings, tmp_path: Path) -> None:
    with scratch(settings):
        r = failover.run(settings, 20_000, 5_000, 300, tmp_path)
    assert len(r.partitions) == 3, r  # two members of a range-assigned group: three of the six partitions each
    assert r.users > 1000
    heartbeat_s = int(str(input_settings(settings.bootstrap, "g")["heartbeat.interval.ms"])) / 1000
    for p in r.partitions:
        # nothing new can show before the group gives up on a: a session timeout after a's last heartbeat
        assert p.dark_s is not None and r.session_timeout_s - heartbeat_s <= p.dark_s < 60, r
        assert p.restore_s is not None and p.restore_s >= 0 and p.keys is not None and p.keys > 0, r
    assert r.worst_dark_s == max(p.dark_s for p in r.partitions if p.dark_s is not None)
    leftovers = settings.es.client().indices.get(index="bench-failover-*", expand_wildcards="all",
                                                 allow_no_indices=True).body
    assert not leftovers
