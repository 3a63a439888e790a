"""Restore reads a changelog to the end of everything written, waiting for a transaction still open: a crashed
predecessor's transaction that was already asked to commit commits after it is gone, and a restore that stopped
before it would disagree with the changelog it then extends (a window's user chunk escaped its tombstones that
way, and a later restore published the window again, empty)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from confluent_kafka import Producer

from pulse.kafkaio import read_range
from tests.names import unique


def _transactional(bootstrap: str) -> Producer:
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": unique("restore-txn")})
    producer.init_transactions(30)
    return producer


def test_restore_waits_for_an_open_transaction_and_takes_it_if_it_commits(bootstrap: str,
                                                                         new_topic: Callable[..., str]) -> None:
    topic = new_topic()
    producer = _transactional(bootstrap)
    producer.begin_transaction()
    for n in range(3):
        producer.produce(topic, b"committed-%d" % n, b"k%d" % n, partition=0)
    producer.commit_transaction(30)
    producer.begin_transaction()
    for n in range(2):
        producer.produce(topic, b"pending-%d" % n, b"p%d" % n, partition=0)
    producer.flush(30)  # written, not yet committed: the last stable offset stays before them

    # a plain read_committed reader stops at the open transaction
    assert [v for _, _, v, _ in read_range(bootstrap, topic, 0, 0)] == [b"committed-0", b"committed-1", b"committed-2"]
    commit = threading.Timer(1.5, lambda: producer.commit_transaction(30))
    commit.start()
    settled = [v for _, _, v, _ in read_range(bootstrap, topic, 0, 0, timeout_s=30, settled=True)]
    commit.join()
    assert settled == [b"committed-0", b"committed-1", b"committed-2", b"pending-0", b"pending-1"]


def test_an_aborted_transaction_is_waited_for_and_left_out(bootstrap: str, new_topic: Callable[..., str]) -> None:
    topic = new_topic()
    producer = _transactional(bootstrap)
    producer.begin_transaction()
    producer.produce(topic, b"aborted", b"a", partition=0)
    producer.flush(30)
    abort = threading.Timer(1.0, lambda: producer.abort_transaction(30))
    started = time.monotonic()
    abort.start()
    assert list(read_range(bootstrap, topic, 0, 0, timeout_s=30, settled=True)) == []
    assert time.monotonic() - started >= 0.9  # it waited for the transaction to end
    abort.join()
