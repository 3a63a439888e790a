"""An operator's Kafka settings reach the aggregator's own consumer, observed where they take effect: the broker.

`pulse aggregate` tunes its consumer's session timeout to 6 s, so that a crashed instance's partitions move on
quickly; an operator's ``PULSE_KAFKA_SESSION_TIMEOUT_MS`` wins over that. The group coordinator holds a member
that stopped heartbeating for the session timeout the member joined with, so after a SIGKILL the time until the
group is empty shows the value the consumer actually used.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from confluent_kafka.admin import AdminClient

from pulse.topics import ensure_topics, input_topics
from tests.names import unique

OPERATOR_MS = 20_000
PULSE_TUNING_MS = 6_000


def members(admin: AdminClient, group: str) -> int:
    try:
        return len(admin.describe_consumer_groups([group], request_timeout=10)[group].result().members)
    except Exception:  # the group is not there yet
        return 0


def test_the_operators_session_timeout_is_the_one_the_broker_holds_the_aggregator_to(bootstrap: str) -> None:
    topic, group = unique("operator-settings"), unique("operator-settings-group")
    ensure_topics(bootstrap, input_topics(topic, 1))
    admin = AdminClient({"bootstrap.servers": bootstrap})
    proc = subprocess.Popen([sys.executable, "-m", "pulse", "aggregate", "--topic", topic, "--group", group],
                            env={**os.environ, "PULSE_KAFKA_SESSION_TIMEOUT_MS": str(OPERATOR_MS)},
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while members(admin, group) != 1:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
            assert time.monotonic() < deadline, "the aggregator did not join its group"
            time.sleep(0.5)
    finally:
        proc.kill()  # SIGKILL: no leave-group request, the coordinator waits out the session timeout
        proc.wait(timeout=10)
    killed = time.monotonic()
    while members(admin, group) and time.monotonic() - killed < 60:
        time.sleep(0.5)
    held = time.monotonic() - killed
    # Pulse's own tuning would have let it go after about 6 s
    assert OPERATOR_MS / 1000 - 3 <= held <= OPERATOR_MS / 1000 + 10, held
    assert held > PULSE_TUNING_MS / 1000 + 5
