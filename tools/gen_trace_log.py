"""Write a large OtterMQ-shaped log for measuring `memento trace` and `replay` (BENCHMARKS.md).

It writes what a busy broker writes, without the broker (minutes faster): persistent 1 KiB messages with a
message-id each, published to a few durable queues, acked in batches of 64 a little later, so the log
holds about twice as many records as messages. Usage:

    tools/gen_trace_log.py DIR [--bytes 1G] [--body 1024]

`DIR/log` is the Memento directory; the last message's id is printed (trace the worst case: the scan
must read the whole log before it finds its removal).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from memento.log import Log
from ottermq.amqp.properties import BasicProperties, encode_properties
from ottermq.broker.events import MessagePublished, MessagesRemoved, QueueDeclared, message_id
from ottermq.store.codec import RECORD_TYPES, encode

ACK_BATCH = 64


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    if text[-1].upper() in units:
        return int(float(text[:-1]) * units[text[-1].upper()])
    return int(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", type=Path)
    parser.add_argument("--bytes", default="1G", type=parse_size)
    parser.add_argument("--body", default=1024, type=int)
    args = parser.parse_args()
    queues = [f"orders.{i}" for i in range(4)]
    body = bytes(range(256)) * (args.body // 256) + b"x" * (args.body % 256)
    started = time.perf_counter()
    with Log.open(args.dir / "log", registry=RECORD_TYPES) as log:
        for name in queues:
            log.append(*encode(QueueDeclared("/", name, True, False, False, {})))
        pending: dict[str, list[int]] = {name: [] for name in queues}
        n = 0
        written = 0
        last_id = ""
        while written < args.bytes:
            queue = queues[n % len(queues)]
            last_id = f"{n:08d}-6f1c-4bd2-9a57-{n * 7919 % 10**12:012d}"
            props = encode_properties(BasicProperties(delivery_mode=2, message_id=last_id))
            event = MessagePublished("/", (queue,), "orders", queue, props, body, int(time.time() * 1000))
            rtype, payload = encode(event)
            lsn = log.append(rtype, payload)
            written += len(payload) + 20
            pending[queue].append(message_id(lsn))
            if len(pending[queue]) == ACK_BATCH:
                rtype, payload = encode(MessagesRemoved("/", queue, tuple(pending[queue]), "ack"))
                log.append(rtype, payload)
                written += len(payload) + 20
                pending[queue] = []
            n += 1
            if n % 16384 == 0:
                log.sync()
        log.sync()
    print(
        f"{n} messages, {written / 2**20:.0f} MiB in {time.perf_counter() - started:.1f} s; last id {last_id}"
    )


if __name__ == "__main__":
    main()
