"""Where a fault run aims: the transaction coordinator is found as the broker places it (Java's String.hashCode,
checked against values Java gives)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pulse.stack.leaders import java_string_hash, transaction_partition


def test_java_string_hash_equals_javas() -> None:
    # values printed by Java's "…".hashCode()
    assert java_string_hash("") == 0
    assert java_string_hash("hello") == 99162322
    assert java_string_hash("polygenelubricants") == -(1 << 31)
    assert java_string_hash("pulse-a") == -225927379
    assert java_string_hash("Aa") == java_string_hash("BB") == 2112
    assert java_string_hash("\U0001F600") == 1772899  # a surrogate pair: two UTF-16 units


def test_the_smallest_hash_maps_to_partition_zero() -> None:
    assert transaction_partition("polygenelubricants", 50) == 0


@given(st.text(max_size=40), st.integers(1, 64))
def test_every_id_lands_on_an_existing_partition(transactional_id: str, partitions: int) -> None:
    assert 0 <= transaction_partition(transactional_id, partitions) < partitions
