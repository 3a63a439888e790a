"""The KRaft cluster id handed to kafka-storage."""

from __future__ import annotations

import base64
import uuid

import pytest

from pulse.stack import kafka


def _decoded(cluster_id: str) -> bytes:
    return base64.urlsafe_b64decode(cluster_id + "==")


def test_cluster_ids_are_uuids_that_never_look_like_an_option() -> None:
    ids = {kafka.new_cluster_id() for _ in range(2000)}
    assert len(ids) == 2000
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)
    assert all(len(_decoded(i)) == 16 for i in ids)


def test_an_id_starting_with_a_dash_is_drawn_again(monkeypatch: pytest.MonkeyPatch) -> None:
    dashed = uuid.UUID(bytes=b"\xf8" + bytes(15))  # first six bits 111110 encode as '-'
    plain = uuid.UUID(bytes=b"\x10" + bytes(15))
    assert base64.urlsafe_b64encode(dashed.bytes).startswith(b"-")
    draws = iter([dashed, plain])
    monkeypatch.setattr(kafka.uuid, "uuid4", lambda: next(draws))
    assert _decoded(kafka.new_cluster_id()) == plain.bytes
