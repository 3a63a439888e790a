"""A lookup that a broker does not answer in time raises the KafkaException its callers handle, never a bare
TimeoutError (which ended an aggregator whose group coordinator's broker had been SIGKILLed)."""

from __future__ import annotations

import socket
import threading

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from pulse.kafkaio import end_offsets, transient


def test_end_offsets_from_a_broker_that_never_answers_raise_kafka_exception() -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:  # takes connections and says nothing
        silent.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(silent.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{silent.getsockname()[1]}", "log_level": 0})
    try:
        with pytest.raises(KafkaException):
            end_offsets(admin, "any", [0, 1], timeout_s=0.5)
    finally:
        stop.set()
        thread.join(2)
        for conn in held:
            conn.close()
        silent.close()


@pytest.mark.parametrize("code", [KafkaError._DESTROY_BROKER, KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN,
                                  KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError._TIMED_OUT])
def test_what_a_restarting_broker_answers_is_waited_out(code: int) -> None:
    """The errors a rolling restart showed (a request in flight to a broker that left the metadata ended an
    aggregator's restore) are retried, not raised."""
    assert transient(KafkaError(code))


@pytest.mark.parametrize("code", [KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError._INVALID_ARG])
def test_what_waiting_cannot_fix_is_raised(code: int) -> None:
    assert not transient(KafkaError(code))
