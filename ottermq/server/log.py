"""Structured logs: one line per record, as key=value pairs or as a JSON object.

Strategy: the standard `logging` module, with fields passed through `extra=` (for example `conn`, `reason`,
`port`) and two formatters. Fields are whatever a record carries beyond the attributes `logging` itself
sets, so a call site adds a field by naming it and nothing else has to change.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, Final, TextIO

# Attributes every LogRecord has; anything else on a record came from `extra=` and is a field.
_STANDARD: Final = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


def _timestamp(record: logging.LogRecord) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{stamp}.{int(record.msecs):03d}Z"


def _kv_value(value: Any) -> str:
    text = str(value)
    if text and not any(c in text for c in ' "=\\\n\t'):
        return text
    return json.dumps(text)


class KeyValueFormatter(logging.Formatter):
    """`ts=... level=info logger=ottermq.server msg="..." conn=127.0.0.1:50000`."""

    def format(self, record: logging.LogRecord) -> str:
        """One key=value line; values with spaces or quotes are JSON-quoted."""
        parts = [
            f"ts={_timestamp(record)}",
            f"level={record.levelname.lower()}",
            f"logger={record.name}",
            f"msg={_kv_value(record.getMessage())}",
        ]
        parts.extend(f"{k}={_kv_value(v)}" for k, v in _fields(record).items())
        if record.exc_info:
            parts.append(f"exc={_kv_value(self.formatException(record.exc_info))}")
        return " ".join(parts)


class JSONFormatter(logging.Formatter):
    """One JSON object per line with ts, level, logger, msg and the record's fields."""

    def format(self, record: logging.LogRecord) -> str:
        """One JSON line; values that JSON cannot hold are written as their str()."""
        doc: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        doc.update(_fields(record))
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def configure_logging(level: str = "info", fmt: str = "kv", stream: TextIO | None = None) -> None:
    """Send every `ottermq` logger's records to `stream` (stderr by default) in the chosen format."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JSONFormatter() if fmt == "json" else KeyValueFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
