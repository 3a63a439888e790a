"""A lookup that a broker does not answer in time raises the KafkaException its callers handle, never a bare
TimeoutError (which ended an aggregator whose group coordinator's broker had been SIGKILLed)."""

from __future__ import annotations

import socket
import threading

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from pulse.kafkaio import end_offsets


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
