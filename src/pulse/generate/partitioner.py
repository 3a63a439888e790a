"""Kafka's default partitioner for keyed records (murmur2), so Pulse picks the partition a Java client would.

Pulse computes the partition itself (cached per key) rather than trusting a client library's setting, so the
ledger knows each record's partition before delivery and tests can compare against Java's own output.
"""

from __future__ import annotations

import zlib
from functools import lru_cache

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's ``Utils.murmur2`` as a signed 32-bit int (Java's return value)."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    full = length & ~3
    for i in range(0, full, 4):
        k = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24)
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    rest = length & 3
    if rest == 3:
        h ^= data[full + 2] << 16
    if rest >= 2:
        h ^= data[full + 1] << 8
    if rest >= 1:
        h ^= data[full]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for(key: bytes, partitions: int) -> int:
    """``Utils.toPositive(murmur2(key)) % partitions``, as in Kafka's BuiltInPartitioner."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


@lru_cache(maxsize=1 << 20)
def cached_partition(key: bytes, partitions: int) -> int:
    return partition_for(key, partitions)


def crc32_partition(key: bytes, partitions: int) -> int:
    """The partition librdkafka's default partitioner (``consistent_random``) gives a keyed record: CRC-32 of the
    key modulo the partition count. What Python, Go, Node and C clients do unless told otherwise."""
    return zlib.crc32(key) % partitions
