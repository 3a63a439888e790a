"""A partition's new owner whose changelog read is held by a transaction its dead predecessor left open fences the
predecessor's transactional id (named on its changelog records): the broker aborts that transaction at once, not
after its timeout, and the restore gets exactly the committed records."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

from confluent_kafka.admin import AdminClient, NewTopic

from pulse.aggregate.restore import Fencer, Sources, open_writer, read_changelog
from pulse.aggregate.transactions import WRITER_HEADER
from pulse.kafkaio import end_offsets
from tests.names import unique

DEAD_WRITER = textwrap.dedent("""
    import os, signal, sys
    from confluent_kafka import Producer
    bootstrap, topic, writer, header = sys.argv[1:]
    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": writer, "transaction.timeout.ms": 300000})
    p.init_transactions(30)
    for n, commit in ((1, True), (2, False)):
        p.begin_transaction()
        for i in range(3):  # as Pulse writes: only a transaction's first record on a partition names its writer
            p.produce(topic, f"v{n}.{i}".encode(), f"k{n}.{i}".encode(), 0,
                      headers=[(header, writer.encode())] if i == 0 else None)
        p.flush(30)
        if commit:
            p.commit_transaction(30)
    os.kill(os.getpid(), signal.SIGKILL)  # dies with the second transaction open
""")


def test_a_transaction_left_open_by_a_dead_writer_is_fenced_and_the_restore_goes_on(bootstrap: str) -> None:
    tag = unique("fence")
    changelog, dead = f"{tag}.changelog", f"{tag}-a"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(changelog, 1, 1)])[changelog].result(30)
    try:
        died = subprocess.run([sys.executable, "-c", DEAD_WRITER, bootstrap, changelog, dead, WRITER_HEADER],
                              capture_output=True, text=True, timeout=120)
        assert died.returncode == -9, died.stderr
        # the open transaction holds read_committed readers: its timeout is 5 minutes
        assert end_offsets(admin, changelog, [0], committed=True)[0] < end_offsets(admin, changelog, [0])[0]
        assert open_writer(bootstrap, changelog, 0) == dead  # named by the open transaction's first record
        # an instance never fences its own id (here: the dead writer's, as if it had come back)
        itself = Sources(bootstrap, changelog, tag, f"{tag}.repartition", f"{tag}.late", writer=dead)
        Fencer(itself)(0)
        assert open_writer(bootstrap, changelog, 0) == dead

        sources = Sources(bootstrap, changelog, tag, f"{tag}.repartition", f"{tag}.late", writer=f"{tag}-b")
        started = time.monotonic()
        records = read_changelog(sources, 0, Fencer(sources))
        assert time.monotonic() - started < 30
        assert records == [(i, f"k1.{i}".encode(), f"v1.{i}".encode()) for i in range(3)]  # the open ones aborted
        assert end_offsets(admin, changelog, [0], committed=True)[0] == end_offsets(admin, changelog, [0])[0]
        assert open_writer(bootstrap, changelog, 0) is None
    finally:
        admin.delete_topics([changelog])
