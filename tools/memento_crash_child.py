"""Crash-test child: append with group commit and print every LSN once it is durable.

Usage: python tools/memento_crash_child.py DIR [SEGMENT_SIZE] [CLIENTS]
Each durable record is printed as "<lsn> <payload hex>" on its own line, flushed at once, so that a
parent that SIGKILLs this process knows exactly which LSNs were reported durable.
"""

from __future__ import annotations

import asyncio
import os
import sys

from memento.log import Log
from memento.writer import AsyncWriter


async def client(writer: AsyncWriter, ident: int) -> None:
    """Append forever; print "<lsn> <hex>" for each record once it is durable."""
    stdout = sys.stdout
    n = 0
    while True:
        payload = f"{ident}:{n}:".encode() + os.urandom(n % 200)
        lsn = writer.append(1, payload)
        await writer.wait_durable(lsn)
        stdout.write(f"{lsn} {payload.hex()}\n")
        stdout.flush()
        n += 1


async def main(path: str, segment_size: int, clients: int) -> None:
    """Open the log (recovering it) and append until killed."""
    log = Log.open(path, segment_size=segment_size)
    writer = AsyncWriter(log)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    await asyncio.gather(*(client(writer, i) for i in range(clients)))


if __name__ == "__main__":
    args = sys.argv[1:]
    asyncio.run(
        main(args[0], int(args[1]) if len(args) > 1 else 1 << 20, int(args[2]) if len(args) > 2 else 32)
    )
