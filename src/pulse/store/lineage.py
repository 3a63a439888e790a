"""Which input topic Pulse's indices were built from, so a re-created topic cannot go unnoticed.

Document versions are input offsets. If the input topic is deleted and created again, offsets restart at 0
and every new document would be silently rejected as stale by the external versions already stored. Pulse
records the topic's id (a UUID Kafka assigns at creation) beside the indices and refuses to write on a mismatch.
"""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka import KafkaException, TopicCollection
from elasticsearch import Elasticsearch, NotFoundError

from pulse.errors import PulseError
from pulse.kafkaio import admin_client
from pulse.store.indices import DEFAULT_PREFIX, meta_index


def topic_id(bootstrap: str, topic: str) -> str:
    admin = admin_client(bootstrap)
    try:
        return str(admin.describe_topics(TopicCollection([topic]))[topic].result(timeout=15).topic_id)
    except KafkaException as exc:
        raise PulseError(f"cannot describe topic {topic!r}: {exc.args[0].str()}") from None


def recorded(es: Elasticsearch, topic: str, prefix: str = DEFAULT_PREFIX) -> dict[str, Any] | None:
    try:
        return es.get(index=meta_index(prefix), id=f"source:{topic}")["_source"]
    except NotFoundError:
        return None


def record(es: Elasticsearch, topic: str, tid: str, generation: int, group: str, prefix: str = DEFAULT_PREFIX,
           replayed_from: int | None = None) -> None:
    es.index(index=meta_index(prefix), id=f"source:{topic}", refresh=True, document={
        "topic": topic, "topic_id": tid, "generation": generation, "group": group,
        "recorded_at": int(time.time() * 1000), "replayed_from": replayed_from})


def check_source(es: Elasticsearch, bootstrap: str, topic: str, group: str, generation: int,
                 prefix: str = DEFAULT_PREFIX) -> str:
    """Record the topic id on first use; raise a clear PulseError if the topic was re-created since.
    Returns "recorded" or "unchanged"."""
    tid = topic_id(bootstrap, topic)
    seen = recorded(es, topic, prefix)
    if seen is None:
        record(es, topic, tid, generation, group, prefix)
        return "recorded"
    if seen["topic_id"] != tid:
        raise PulseError(
            f"input topic {topic!r} was re-created (its id is {tid}; the indices behind {prefix}-* were built from "
            f"{seen['topic_id']}): offsets restarted, so new documents would be rejected as stale versions. "
            f"Rebuild from the new topic with `pulse replay --from <timestamp>`.")
    return "unchanged"
