"""Attach time in the middle of a large stream: offset -> record and time -> offset through the index.

Usage: python -m tools.bench_stream_attach [COUNT] [DIR]   (COUNT small messages, default 1,000,000)
Builds a stream log of COUNT 32-byte messages (one ms apart) in DIR (a temporary directory by default),
opens it again as the broker does at start (index files read, the tails walked), then times reading the
record at offsets in the middle (a new cursor each time, as a consumer attaching) and finding offsets by time.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path

from ottermq.store.streams import MementoStreamLog, Retention


async def _build(path: Path, count: int, start: int) -> None:
    stream = MementoStreamLog(path, lambda: None, Retention())
    body = b"x" * 32
    assert stream.writer is None
    for i in range(count):
        stream.append("", "events", b"", body, start + i)
        if i % 100_000 == 99_999:
            assert stream.writer is not None
            await stream.writer.sync()
    assert stream.writer is not None
    await stream.writer.sync()
    await stream.aclose()


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    root = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(tempfile.mkdtemp(prefix="stream-attach-"))
    path = root / "stream"
    start = 1_600_000_000_000
    began = time.perf_counter()
    if not path.exists():
        asyncio.run(_build(path, count, start))
    built = time.perf_counter()
    stream = MementoStreamLog(path, lambda: None, Retention())
    opened = time.perf_counter()
    size = stream.size_bytes
    print(f"{count} messages, {size / 1e6:.0f} MB in {len(stream.log.segments)} segments")
    print(f"build {built - began:.1f} s, open (index load) {1000 * (opened - built):.1f} ms")
    middle = count // 2
    worst = 0.0
    for offset in (middle, middle + 1, middle + 12345, count // 3, count - 1, 7):
        stream._cursors.clear()  # a consumer attaching: no open position to reuse
        t0 = time.perf_counter()
        record = stream.read(offset, 1)[0]
        spent = time.perf_counter() - t0
        assert record.offset == offset, (record.offset, offset)
        worst = max(worst, spent)
        print(f"attach at offset {offset}: {1000 * spent:.3f} ms")
    for offset in (middle, count // 3):
        stream._cursors.clear()
        t0 = time.perf_counter()
        found = stream.offset_at(start + offset)
        spent = time.perf_counter() - t0
        assert found == offset, (found, offset)
        worst = max(worst, spent)
        print(f"attach at the time of offset {offset}: {1000 * spent:.3f} ms")
    print(f"worst {1000 * worst:.3f} ms")
    stream.log.close()
    if len(sys.argv) <= 2:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
