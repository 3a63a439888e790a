"""Every metric Pulse exports, declared once: its name, help and labels. Components update these objects; the
metrics endpoint (:mod:`pulse.observe.server`) exposes whatever the running process has touched."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

# aggregate — counters first: a scrape reads them before the lag, which is set before them (see EngineMetrics)
RECORDS = Counter("pulse_records", "Input records committed by this aggregator, by outcome.", ["outcome"])
FORWARDED = Counter("pulse_records_forwarded",
                    "Input records forwarded to the partition that owns their user (input not keyed by user id).")
DOCUMENTS = Counter("pulse_documents_published", "Documents published to the aggregates topic, by kind.", ["kind"])
LAG_RECORDS = Gauge("pulse_consumer_lag_records",
                    "Input records not yet committed, over this aggregator's partitions (at its last commit).")
LAG_SECONDS = Gauge("pulse_consumer_lag_seconds",
                    "How long the most-behind partition has had records waiting (0 when caught up).")
FLUSH_SECONDS = Histogram("pulse_flush_seconds", "Time to build and send one flush's transaction.",
                          buckets=SECONDS)
TRANSACTION_SECONDS = Histogram("pulse_transaction_commit_seconds", "Time for the broker to commit a transaction.",
                                buckets=SECONDS)
STATE_KEYS = Gauge("pulse_state_keys", "Live state entries over this aggregator's partitions, by kind.", ["kind"])
STATE_BYTES = Gauge("pulse_state_bytes", "Approximate heap bytes of the live state (collection capacities and "
                    "interned strings: a lower bound of what it costs).")
RESTORE_SECONDS = Histogram("pulse_restore_seconds", "Time from the start of a restore until a partition's state is "
                            "back from its changelog (partitions assigned together restore together).",
                            buckets=SECONDS)
PARTITIONS = Gauge("pulse_assigned_partitions", "Input partitions this aggregator owns.")
USERS_PENDING = Gauge("pulse_users_pending", "Users whose document is behind their state, waiting for their turn "
                      "in the user budget (--user-writes), over this aggregator's partitions.")

# store and archive
ES_BULK_SECONDS = Histogram("pulse_es_bulk_seconds", "Latency of one Elasticsearch bulk request.", ["writer"],
                            buckets=SECONDS)
ES_DOCUMENTS = Counter("pulse_es_documents_written", "Documents Elasticsearch accepted.", ["writer"])
ES_RETRIES = Counter("pulse_es_retries", "Bulk requests or documents retried after a refusal or an outage.",
                     ["writer"])
STORE_DEAD_LETTERS = Counter("pulse_store_dead_letters",
                             "Documents Elasticsearch rejected for good, sent to the store's dead-letter topic.",
                             ["writer"])

# collect
COLLECT_EVENTS = Counter("pulse_collect_events", "Events the collector answered, by result: accepted (Kafka has it), "
                         "duplicate, rejected (dead-lettered with its reason) or retry.", ["result"])
COLLECT_REFUSED = Counter("pulse_collect_refused_requests", "Requests the collector refused as a whole, by reason "
                          "(bad_key, origin_not_allowed, body_too_large, malformed_json, kafka_unavailable, ...).",
                          ["reason"])


def totals(counter: Counter, label: str) -> dict[str, int]:
    """A labelled counter's totals by the value of ``label``, read back from the metric itself."""
    return {sample.labels[label]: int(sample.value)
            for family in counter.collect() for sample in family.samples if sample.name.endswith("_total")}

VERIFY_WINDOWS_CHECKED = Counter("pulse_verify_windows_checked",
                                 "Window documents `pulse verify --follow` compared with its recompute, once final.")
VERIFY_REVISIONS_CHECKED = Counter("pulse_verify_revisions_checked",
                                   "Windows whose corrections (revisions, summed) `pulse verify --follow` compared "
                                   "with its recompute, once no correction could reach them.")
VERIFY_MISMATCHES = Counter("pulse_verify_mismatches", "Differences `pulse verify --follow` found: a window document "
                            "missing, extra, or with a field that differs (one per field).")
VERIFY_ROUNDS = Counter("pulse_verify_rounds", "Rounds `pulse verify --follow` walked the input up to the "
                        "aggregator's commits.")
VERIFY_INPUT_RECORDS = Gauge("pulse_verify_input_records", "Input records `pulse verify --follow` has walked since it "
                             "last started from the beginning of the input.")
VERIFY_CHECKED_UP_TO = Gauge("pulse_verify_checked_up_to_ms", "Event time (epoch ms) up to which every window of every "
                             "partition has been compared by `pulse verify --follow` (0: none yet).")



class _Read(Collector):
    """Counters a component already keeps (the generator's delivery report), read when scraped."""

    def __init__(self, reads: dict[str, tuple[str, Callable[[], float]]]) -> None:
        self._reads = reads

    def collect(self) -> Iterable[CounterMetricFamily]:
        for name, (doc, read) in self._reads.items():
            yield CounterMetricFamily(name, doc, value=read())


def generator(delivered: Callable[[], float], failed: Callable[[], float]) -> None:
    """The generator's metrics: events the broker acknowledged, and events it did not take."""
    REGISTRY.register(_Read({"pulse_events_delivered": ("Events the broker acknowledged.", delivered),
                             "pulse_events_failed": ("Events that could not be delivered.", failed)}))
