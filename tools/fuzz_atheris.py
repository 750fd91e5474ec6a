"""Coverage-guided fuzzing of the AMQP codec with atheris (libFuzzer for Python): the long run.

Strategy: the hypothesis tests in tests/unit/amqp/test_fuzz*.py run a few hundred examples on every test
run; this tool runs for as long as you let it, steered by coverage. Each input is split by its first octet
into one of four targets: the frame reader (any bytes after the protocol header, in random chunks, with a
random frame_max), a method payload decoded by a method class chosen by the input, a field table, and the
basic properties (full decode and the cheap peeks). The contract under test: the codec only ever raises
its own `AMQPError`; anything else (IndexError, UnicodeDecodeError, RecursionError, a hang) is a finding,
and libFuzzer writes the input that caused it to `crash-<sha1>` in the working directory.

Run (atheris is not a project dependency: `.venv/bin/pip install atheris`):

    .venv/bin/python tools/fuzz_atheris.py -max_total_time=600 /tmp/amqp-corpus
    .venv/bin/python tools/fuzz_atheris.py -runs=200000           # a fixed number of inputs
    .venv/bin/python tools/fuzz_atheris.py crash-<sha1>            # replay one finding

The corpus directory (created if missing) keeps the interesting inputs between runs; it is seeded with
valid frames of every method. Options are libFuzzer's (`-help=1` lists them).
"""

from __future__ import annotations

import os
import struct
import sys
from pathlib import Path
from typing import Any

try:
    import atheris  # type: ignore[import-untyped,import-not-found,unused-ignore]
except ImportError:  # pragma: no cover - depends on the environment
    sys.exit("fuzz_atheris: atheris is not installed; run `.venv/bin/pip install atheris`")

with atheris.instrument_imports(include=["ottermq.amqp"]):
    from ottermq.amqp.constants import PROTOCOL_HEADER
    from ottermq.amqp.errors import AMQPError
    from ottermq.amqp.frames import FrameReader, encode_content, encode_method_frame
    from ottermq.amqp.methods import METHODS
    from ottermq.amqp.properties import (
        BasicProperties,
        decode_properties,
        encode_properties,
        peek_delivery_mode,
        peek_expiration,
        peek_priority,
    )
    from ottermq.amqp.table import decode_table, encode_table

_CLASSES: list[Any] = list(METHODS.values())
_FRAME_MAX = (0, 4096, 131072, 200)
_TARGET_READER, _TARGET_METHOD, _TARGET_TABLE, _TARGET_PROPERTIES = range(4)


def _reader(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    frame_max = _FRAME_MAX[fdp.ConsumeIntInRange(0, len(_FRAME_MAX) - 1)]
    chunk = fdp.ConsumeIntInRange(1, 512)
    stream = PROTOCOL_HEADER + fdp.ConsumeBytes(fdp.remaining_bytes())
    reader = FrameReader(frame_max=frame_max)
    for i in range(0, len(stream), chunk):
        reader.feed(stream[i : i + chunk])
        for _ in reader.frames():
            pass


def _method(data: bytes) -> None:
    if not data:
        return
    cls = _CLASSES[data[0] % len(_CLASSES)]
    cls.decode(memoryview(data[1:]))


def _table(data: bytes) -> None:
    decode_table(memoryview(data), 0)


def _properties(data: bytes) -> None:
    decode_properties(data)
    peek_delivery_mode(data)
    peek_priority(data)
    peek_expiration(data)


_TARGETS = (_reader, _method, _table, _properties)


def test_one_input(data: bytes) -> None:
    """libFuzzer's entry point: run one input through the target its first octet picks."""
    if not data:
        return
    try:
        _TARGETS[data[0] % len(_TARGETS)](data[1:])
    except AMQPError:
        pass  # the codec's own, documented failure: fine


def _seeds() -> list[bytes]:
    """Valid inputs for every target, so the fuzzer starts from deep inside the formats."""
    table = encode_table({"s": "text", "i": 7, "l": 2**40, "b": True, "f": 1.5, "t": {"n": [1, "a", None]}})
    props = encode_properties(
        BasicProperties(
            content_type="text/plain",
            headers={"h": "v"},
            delivery_mode=2,
            priority=5,
            expiration="1000",
            message_id="m",
            timestamp=0,
            user_id="guest",
        )
    )
    seeds = [bytes([_TARGET_TABLE]) + table, bytes([_TARGET_PROPERTIES]) + props]
    content = encode_content(1, 60, props, b"body" * 8, 4096)
    seeds.append(bytes([_TARGET_READER, 0, 64]) + content)
    for index, cls in enumerate(_CLASSES):
        try:
            method = cls()
        except TypeError:
            continue
        seeds.append(bytes([_TARGET_METHOD, index]) + method.encode())
        seeds.append(bytes([_TARGET_READER, 2, 200]) + encode_method_frame(1, method))
    seeds.append(bytes([_TARGET_READER, 1, 7]) + struct.pack(">BHI", 1, 0, 0xFFFFFFFF))
    return seeds


def _corpus_dir(argv: list[str]) -> Path | None:
    for arg in argv[1:]:
        if not arg.startswith("-") and not os.path.isfile(arg):
            return Path(arg)
    return None


def main() -> None:
    """Seed the corpus directory (if one is given) and hand control to libFuzzer."""
    corpus = _corpus_dir(sys.argv)
    if corpus is not None:
        corpus.mkdir(parents=True, exist_ok=True)
        for i, seed in enumerate(_seeds()):
            path = corpus / f"seed-{i:04d}"
            if not path.exists():
                path.write_bytes(seed)
    # Deep nesting is the codec's to refuse (502), not Python's stack to overflow.
    sys.setrecursionlimit(10_000)
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
