"""Errors the clients raise when a backend cannot be reached: transient, worth a retry."""

from __future__ import annotations


class BackendUnavailable(RuntimeError):
    """A backend did not answer in time or refused the connection; the message says where."""


class KafkaUnavailable(BackendUnavailable):
    pass


class PostgresUnavailable(BackendUnavailable):
    pass
