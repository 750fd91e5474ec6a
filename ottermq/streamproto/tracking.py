"""Server-side tracking of the stream protocol: consumers' stored offsets and publishers' last publishing
ids, by (vhost, stream, reference), kept across restarts.

Strategy: RabbitMQ keeps both in the stream itself (tracking chunks). OtterMQ's stream records are the
messages and nothing else (offsets are log positions), so tracking lives beside them, in one small JSON
file written whole (temporary file, fsync, rename) at most every `SAVE_DELAY` seconds after a change and
at a clean stop. A crash loses at most the changes of that last moment: a consumer then resumes from a
slightly older offset, and a publisher's deduplication from a slightly older id (messages re-sent after
it are appended again). Without a path (in-memory persistence) nothing is written.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path
from typing import Final

log: Final = logging.getLogger("ottermq.streamproto")

SAVE_DELAY: Final = 0.2

Key = tuple[str, str, str]


class Tracking:
    """Stored offsets and publisher sequences, durable in `path` (or nowhere when None)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.offsets: dict[Key, int] = {}
        self.sequences: dict[Key, int] = {}
        self._save: asyncio.TimerHandle | None = None
        if path is not None and path.exists():
            try:
                data = json.loads(path.read_text())
                self.offsets = {(v, s, r): int(o) for v, s, r, o in data.get("offsets", [])}
                self.sequences = {(v, s, r): int(o) for v, s, r, o in data.get("sequences", [])}
            except (OSError, ValueError, TypeError) as exc:
                log.error("stream tracking unreadable; starting without it", extra={"error": str(exc)})

    def store_offset(self, vhost: str, stream: str, reference: str, offset: int) -> None:
        self.offsets[vhost, stream, reference] = offset
        self._changed()

    def offset(self, vhost: str, stream: str, reference: str) -> int | None:
        return self.offsets.get((vhost, stream, reference))

    def sequence(self, vhost: str, stream: str, reference: str, default: int = 0) -> int:
        """The last publishing id appended for publisher `reference` (`default` when none: 0 is what
        query_publisher_sequence answers, as RabbitMQ; deduplication asks for -1, since for a reference
        without a sequence nothing is a duplicate, not even id 0, as in osiris)."""
        return self.sequences.get((vhost, stream, reference), default)

    def set_sequence(self, vhost: str, stream: str, reference: str, sequence: int) -> None:
        self.sequences[vhost, stream, reference] = sequence
        self._changed()

    def forget(self, vhost: str, stream: str) -> None:
        """A deleted stream's tracking goes with it."""
        for table in (self.offsets, self.sequences):
            for key in [key for key in table if key[0] == vhost and key[1] == stream]:
                del table[key]
        self._changed()

    def _changed(self) -> None:
        if self.path is None or self._save is not None:
            return
        self._save = asyncio.get_running_loop().call_later(SAVE_DELAY, self.save)

    def save(self) -> None:
        """Write the file now (a clean stop; the timer)."""
        if self._save is not None:
            self._save.cancel()
            self._save = None
        path = self.path
        if path is None:
            return
        data = {
            "offsets": [[*key, value] for key, value in self.offsets.items()],
            "sequences": [[*key, value] for key, value in self.sequences.items()],
        }
        temporary = path.with_name(path.name + ".tmp")
        try:
            with open(temporary, "w") as out:
                json.dump(data, out)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, path)
        except OSError as exc:
            log.error("cannot save stream tracking", extra={"path": str(path), "error": str(exc)})
