"""Memento: a segmented write-ahead log with snapshots. It knows nothing of AMQP."""

__version__ = "0.1.0"
