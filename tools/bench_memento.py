"""Benchmark Memento against the physical limits of the disk it runs on (not a test).

Strategy: measure, in one run and on one file system, what the disk allows (a 1 KiB write plus fdatasync
per record; 1 KiB writes with one fdatasync every millisecond) and what Memento achieves (AsyncWriter group
commit under 1, 16 and 128 concurrent waiters; replay of a log; snapshot save and load of a 1M-entry
projection), then print the ratios against the targets. The fsync-every-1ms figure is the ceiling that group
commit can reach while keeping latency around one fsync, so that is what the 128-waiter figure is judged by.

    .venv/bin/python tools/bench_memento.py [--size 1GiB] [--seconds 2] [--dir DIR] [--json]
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import struct
import tempfile
import time
from pathlib import Path
from typing import Any

import typer

RECORD_SIZE = 1024
RECORD_TYPE = 1
GROUP_TARGET = 0.5  # 128 waiters vs fdatasync-every-1ms
REPLAY_TARGET = 300_000  # records/s
SNAPSHOT_ENTRIES = 1_000_000
ENTRY = struct.Struct(">QIIII")  # msg id, queue, segment, offset, length: a compact per-message index

app = typer.Typer(add_completion=False)


def parse_size(text: str) -> int:
    """Parse '1GiB', '256MiB', '64k', '1000' into bytes."""
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    cleaned = text.strip().lower().removesuffix("ib").removesuffix("b")
    if cleaned and cleaned[-1] in units:
        return int(float(cleaned[:-1]) * units[cleaned[-1]])
    return int(cleaned)


def raw_fsync_per_write(directory: Path, seconds: float) -> float:
    """Records/s when every 1 KiB write is followed by its own fdatasync."""
    record = os.urandom(RECORD_SIZE)
    path = directory / "raw-per-write.bin"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.posix_fallocate(fd, 0, 64 << 20)
        os.fsync(fd)
        count, offset = 0, 0
        deadline = time.perf_counter() + seconds
        started = time.perf_counter()
        while time.perf_counter() < deadline:
            os.pwrite(fd, record, offset)
            os.fdatasync(fd)
            offset = (offset + RECORD_SIZE) % (64 << 20)
            count += 1
        return count / (time.perf_counter() - started)
    finally:
        os.close(fd)
        path.unlink()


def raw_fsync_every_ms(directory: Path, seconds: float) -> float:
    """Records/s when 1 KiB writes go in back to back and one fdatasync runs every millisecond."""
    record = os.urandom(RECORD_SIZE)
    path = directory / "raw-every-ms.bin"
    size = 1 << 30
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.ftruncate(fd, size)
        count, offset = 0, 0
        started = time.perf_counter()
        deadline = started + seconds
        next_sync = started + 0.001
        now = started
        while now < deadline:
            os.pwrite(fd, record, offset)
            offset = (offset + RECORD_SIZE) % size
            count += 1
            now = time.perf_counter()
            if now >= next_sync:
                os.fdatasync(fd)
                now = time.perf_counter()
                next_sync = now + 0.001
        os.fdatasync(fd)
        return count / (time.perf_counter() - started)
    finally:
        os.close(fd)
        path.unlink()


def snapshot_times(directory: Path, entries: int) -> dict[str, float]:
    """Seconds to save and to load a snapshot of a projection with `entries` compact entries."""
    from memento.snapshot import SnapshotStore

    pack = ENTRY.pack
    state = b"".join(
        pack(i, i % 64, i // 65536, (i % 65536) * RECORD_SIZE, RECORD_SIZE) for i in range(entries)
    )
    path = directory / "snapshots"
    with SnapshotStore(path) as store:
        started = time.perf_counter()
        store.save(entries, state)
        saved = time.perf_counter()
        loaded = store.load_latest()
        done = time.perf_counter()
        stored = store.list()[-1].stored_size
    assert loaded is not None and loaded.state == state
    shutil.rmtree(path)
    return {
        "entries": entries,
        "state_bytes": len(state),
        "stored_bytes": stored,
        "save_s": saved - started,
        "load_s": done - saved,
    }


def group_commit_rate(directory: Path, waiters: int, seconds: float) -> dict[str, float]:
    """Records/s through AsyncWriter when `waiters` tasks each append a 1 KiB record and await it."""
    from memento.log import Log
    from memento.writer import AsyncWriter

    path = directory / f"group-{waiters}"
    record = os.urandom(RECORD_SIZE)

    async def run() -> dict[str, float]:
        with Log.open(path) as log:
            writer = AsyncWriter(log)
            done = 0
            stop = False
            latencies: list[float] = []
            clock = time.perf_counter

            async def worker() -> None:
                nonlocal done
                append = writer.append
                wait = writer.wait_durable
                while not stop:
                    began = clock()
                    await wait(append(RECORD_TYPE, record))
                    latencies.append(clock() - began)
                    done += 1

            started = clock()
            cpu = time.process_time()
            tasks = [asyncio.create_task(worker()) for _ in range(waiters)]
            await asyncio.sleep(seconds)
            stop = True
            await asyncio.gather(*tasks)
            elapsed = clock() - started
            cpu = time.process_time() - cpu
            await writer.close()
        latencies.sort()
        return {
            "rate": done / elapsed,
            "p50_ms": latencies[len(latencies) // 2] * 1e3,
            "p99_ms": latencies[int(len(latencies) * 0.99)] * 1e3,
            "cpu_share": cpu / elapsed,
        }

    try:
        try:
            import uvloop

            return uvloop.run(run())
        except ImportError:
            return asyncio.run(run())
    finally:
        shutil.rmtree(path, ignore_errors=True)


def replay_rate(directory: Path, size: int) -> dict[str, float]:
    """Write a log of about `size` bytes of 1 KiB records, then time opening it and replaying it."""
    from memento.log import Log
    from memento.record import HEAD_SIZE

    path = directory / "replay"
    record = os.urandom(RECORD_SIZE - HEAD_SIZE)  # 1 KiB including the record header
    count = max(1, size // RECORD_SIZE)
    started = time.perf_counter()
    with Log.open(path) as log:
        append = log.append
        for i in range(count):
            append(RECORD_TYPE, record)
            if i % 65536 == 65535:
                log.sync()
    written = time.perf_counter()
    with Log.open(path) as log:
        opened = time.perf_counter()
        cpu = time.process_time()
        seen = 0
        for _record in log.replay():
            seen += 1
        replayed = time.perf_counter()
        cpu = time.process_time() - cpu
    shutil.rmtree(path, ignore_errors=True)
    assert seen == count, (seen, count)
    return {
        "records": count,
        "write_s": written - started,
        "open_s": opened - written,
        "replay_s": replayed - opened,
        "replay_cpu_s": cpu,
        "rate": count / (replayed - opened),
        "open_and_replay_rate": count / (replayed - written),
    }


def render(results: dict[str, Any]) -> str:
    """The human-readable table and ratios (of the sections that ran)."""
    lines = ["what                                        records/s    notes", "-" * 78]
    if "raw_fsync_per_write" in results:
        lines.append(
            f"{'raw: fdatasync per 1 KiB write':<42}{results['raw_fsync_per_write']:>11,.0f}    "
            "physical limit, no batching"
        )
        lines.append(
            f"{'raw: fdatasync every 1 ms':<42}{results['raw_fsync_every_1ms']:>11,.0f}    "
            "ceiling for ~1 ms group commit"
        )
    for waiters, g in results.get("group_commit", {}).items():
        lines.append(
            f"{f'AsyncWriter, {waiters} waiters':<42}{g['rate']:>11,.0f}    "
            f"p50 {g['p50_ms']:.2f} ms, p99 {g['p99_ms']:.2f} ms, CPU {g['cpu_share']:.0%}"
        )
    if "replay" in results:
        r = results["replay"]
        lines.append(
            f"{'replay (after open)':<42}{r['rate']:>11,.0f}    {r['records']:,} records, open "
            f"{r['open_s']:.2f} s, replay {r['replay_s']:.2f} s ({r['replay_cpu_s']:.2f} s CPU)"
        )
    if "snapshot" in results:
        s = results["snapshot"]
        lines.append(
            f"snapshot of {s['entries']:,} entries: {s['state_bytes'] / 2**20:.1f} MiB -> "
            f"{s['stored_bytes'] / 2**20:.1f} MiB stored, save {s['save_s']:.3f} s, "
            f"load {s['load_s']:.3f} s"
        )
    lines.append("-" * 78)
    if "ratio_128_vs_1ms" in results:
        ratio = results["ratio_128_vs_1ms"]
        lines.append(
            f"128 waiters / fdatasync-every-1ms = {ratio:.0%} (target >= {GROUP_TARGET:.0%}: "
            f"{'met' if ratio >= GROUP_TARGET else 'MISSED'})"
        )
    if "replay" in results:
        rate = results["replay"]["rate"]
        lines.append(
            f"replay = {rate:,.0f} rec/s (target >= {REPLAY_TARGET:,}: "
            f"{'met' if rate >= REPLAY_TARGET else 'MISSED'})"
        )
    return "\n".join(lines)


SECTIONS = ("raw", "group", "replay", "snapshot")


@app.command()
def run(
    size: str = typer.Option("1GiB", help="Size of the log replayed, e.g. 1GiB, 256MiB."),
    seconds: float = typer.Option(2.0, help="Duration of each append measurement."),
    directory: Path | None = typer.Option(
        None,
        "--dir",
        help="Where to write (default: a temp dir under the current directory, i.e. the same disk).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    entries: int = typer.Option(SNAPSHOT_ENTRIES, help="Entries in the snapshotted projection."),
    only: str = typer.Option(",".join(SECTIONS), help="Sections: raw,group,replay,snapshot."),
) -> None:
    """Run the measurements once and print the table (or JSON)."""
    chosen = {part.strip() for part in only.split(",") if part.strip()}
    if not chosen <= set(SECTIONS):
        raise typer.BadParameter(f"unknown sections {sorted(chosen - set(SECTIONS))}", param_hint="--only")
    base = Path(tempfile.mkdtemp(prefix="bench-memento-", dir=directory or Path.cwd()))
    results: dict[str, Any] = {}
    try:
        if "raw" in chosen:
            results["raw_fsync_per_write"] = raw_fsync_per_write(base, seconds)
            results["raw_fsync_every_1ms"] = raw_fsync_every_ms(base, seconds)
        if "group" in chosen:
            results["group_commit"] = {str(n): group_commit_rate(base, n, seconds) for n in (1, 16, 128)}
        if "replay" in chosen:
            results["replay"] = replay_rate(base, parse_size(size))
            results["replay_target_met"] = results["replay"]["rate"] >= REPLAY_TARGET
        if "snapshot" in chosen:
            results["snapshot"] = snapshot_times(base, entries)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    if "raw" in chosen and "group" in chosen:
        results["ratio_128_vs_1ms"] = results["group_commit"]["128"]["rate"] / results["raw_fsync_every_1ms"]
    print(json.dumps(results, indent=2) if as_json else render(results))


if __name__ == "__main__":
    app()
