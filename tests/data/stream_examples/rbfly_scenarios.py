"""OtterMQ's own scripts for rbfly 0.10.0, in place of rbfly's examples.

rbfly's examples are not in its PyPI sdist and its repository could not be fetched here; rbfly is GPLv3+,
so its examples could not be copied into this MIT project either. This script does what rbfly's
documentation shows (publishers of each kind, deduplication by publisher name, subscribing from
first/offset/timestamp/an offset reference, writing an offset reference) and prints one line per step.

    STREAM_HOST=127.0.0.1 STREAM_PORT=5552 python rbfly_scenarios.py STREAM
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from contextlib import aclosing

import rbfly.streams as rbs

N = 500


async def read(client: rbs.StreamsClient, stream: str, offset: rbs.Offset, count: int) -> list[object]:
    got: list[object] = []
    # aclosing: the subscription ends here, not when the generator is collected (after the stream is gone)
    async with aclosing(client.subscribe(stream, offset=offset, timeout=10)) as messages:
        async for message in messages:
            got.append(message)
            if len(got) == count:
                break
    return got


async def main(stream: str) -> None:
    url = "rabbitmq-stream://guest:guest@{}:{}/".format(
        os.environ.get("STREAM_HOST", "127.0.0.1"), os.environ.get("STREAM_PORT", "5552")
    )
    client = rbs.streams_client(url)
    await client.create_stream(stream)

    async with client.publisher(stream, name="single") as publisher:
        for i in range(N):
            await publisher.send(f"single {i}")
    print(f"single: sent {N}")

    async with client.publisher(stream, name="fast", cls=rbs.PublisherBatchFast) as batch:
        for i in range(N):
            batch.batch(f"fast {i}")
        await batch.flush()
    print(f"batch fast: sent {N}")

    async with client.publisher(stream, name="limit", cls=rbs.PublisherBatchLimit) as limited:
        # batch() blocks at max_len until a flush(): one flush per 100 here (rbfly's docs flush from
        # another task).
        for i in range(N):
            await limited.batch(f"limit {i}", max_len=100)
            if i % 100 == 99:
                await limited.flush()
        await limited.flush()
    print(f"batch limit: sent {N}")

    async with client.publisher(stream, name="bin") as binary:  # bytes: an AMQP 1.0 data section
        for i in range(N):
            await binary.send(b"bin %d" % i)
    print(f"bytes: sent {N}")

    # The same publisher name again: rbfly numbers on from the broker's last publishing id.
    async with client.publisher(stream, name="single") as publisher:
        await publisher.send("single again")
    print("single again: sent 1")

    total = 4 * N + 1
    everything = await read(client, stream, rbs.Offset.FIRST, total)
    expected = (
        [f"single {i}" for i in range(N)]
        + [f"fast {i}" for i in range(N)]
        + [f"limit {i}" for i in range(N)]
        + [b"bin %d" % i for i in range(N)]
        + ["single again"]
    )
    assert everything == expected, everything[:5]
    print(f"first: read {len(everything)}")

    tail = await read(client, stream, rbs.Offset.offset(3 * N), N + 1)
    assert tail == expected[3 * N :]
    print(f"offset {3 * N}: read {len(tail)}")

    stamp = time.time()
    await asyncio.sleep(0.05)
    async with client.publisher(stream, name="late") as publisher:
        await publisher.send("late")
    late = await read(client, stream, rbs.Offset.timestamp(stamp), 1)
    assert late == ["late"], late
    print("timestamp: read 1")

    await client.write_offset(stream, "reader-1", 10)
    resumed = await read(client, stream, rbs.Offset.reference("reader-1"), 3)
    assert resumed == expected[11:14], resumed
    print("reference: resumed after offset 10")

    await client.delete_stream(stream)
    await client.disconnect()
    print("done")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "rbfly-scenarios"))
