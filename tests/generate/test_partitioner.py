"""murmur2 partitioning must agree with Kafka's Java client, byte for byte."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from pulse.config import Settings
from pulse.generate.partitioner import murmur2, partition_for
from pulse.stack.artifacts import kafka_lib
from pulse.stack.service import java_home

# Published test vectors from Kafka's own UtilsTest (Utils.murmur2).
KAFKA_VECTORS = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


def test_kafka_published_vectors() -> None:
    for key, expected in KAFKA_VECTORS.items():
        assert murmur2(key) == expected, key


def test_partitions_match_the_java_client(settings: Settings, tmp_path: Path) -> None:
    """Ask Kafka's Java code (from the broker's jars) for the partition of many keys and compare."""
    keys = [f"u{i:07d}" for i in range(0, 50_000, 97)] + ["", "é", "ключ", "x" * 300]
    (tmp_path / "keys.txt").write_text("\n".join(keys[:-4]) + "\n", encoding="utf-8")
    source = tmp_path / "Partitions.java"
    source.write_text(textwrap.dedent("""
        import java.nio.charset.StandardCharsets;
        import java.nio.file.*;
        import org.apache.kafka.common.utils.Utils;
        public class Partitions {
          public static void main(String[] a) throws Exception {
            for (String k : Files.readAllLines(Path.of(a[0]), StandardCharsets.UTF_8)) {
              byte[] b = k.getBytes(StandardCharsets.UTF_8);
              int h = Utils.toPositive(Utils.murmur2(b));
              System.out.println(h % 6 + " " + h % 13);
            }
          }
        }"""))
    lib, _ = kafka_lib(settings)
    out = subprocess.run([str(java_home() / "bin" / "java"), "-cp", f"{lib}/*", str(source),
                          str(tmp_path / "keys.txt")], capture_output=True, text=True, check=True, timeout=120)
    java = [tuple(map(int, line.split())) for line in out.stdout.splitlines()]
    ours = [(partition_for(k.encode(), 6), partition_for(k.encode(), 13)) for k in keys[:-4]]
    assert len(java) == len(ours) > 500
    assert ours == java


@given(st.binary(max_size=200), st.integers(1, 1000))
def test_partition_is_in_range_and_stable(key: bytes, partitions: int) -> None:
    p = partition_for(key, partitions)
    assert 0 <= p < partitions
    assert p == partition_for(bytes(key), partitions)


@settings(max_examples=500, deadline=None)
@given(st.text(min_size=0, max_size=80), st.integers(1, 1000))
def test_the_native_core_partitions_users_as_the_generator_does(user: str, partitions: int) -> None:
    """The aggregator's check that input is keyed by user id uses the native murmur2: it must agree with the
    generator's (which the tests above hold against Kafka's Java code)."""
    from pulse.aggregate._core import user_partition

    assert user_partition(user, partitions) == partition_for(user.encode(), partitions)


def test_crc32_partitions_match_a_default_librdkafka_client(bootstrap: str, new_topic) -> None:
    """`--crc32-key-fraction` must put records where a plain Python, Go, Node or C client would."""
    from confluent_kafka import Producer

    from pulse.generate.partitioner import crc32_partition

    topic = new_topic(partitions=6, prefix="crc")
    placed: dict[bytes, int] = {}
    producer = Producer({"bootstrap.servers": bootstrap})  # every default, the partitioner included
    for n in range(60):
        key = f"user-{n}".encode()
        producer.produce(topic, b"{}", key, on_delivery=lambda err, msg: placed.__setitem__(msg.key(), msg.partition()))
    assert producer.flush(30) == 0
    assert len(placed) == 60
    assert placed == {key: crc32_partition(key, 6) for key in placed}
    assert len(set(placed.values())) > 1
