"""Operator-facing errors: the CLI prints their message as one line and exits non-zero, no traceback."""

from __future__ import annotations


class PulseError(Exception):
    """A mistake or missing prerequisite the operator can fix; the message says how."""

    exit_code = 1


class StackError(PulseError):
    """The local Kafka / Elasticsearch stack cannot be set up, started or reached."""


class BrokerUnavailable(PulseError):
    """Kafka did not answer in time."""

    exit_code = 3
